"""The ``tandem`` command: the dev stack, the services, topics, keys and dead letters."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from redis.exceptions import RedisClusterException, RedisError

from shared.kafka import ensure_topics
from shared.redis import Keys, make_redis, redis_where
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.topics import ALL_TOPICS, dlq
from shared.vault import Rotation, Vault

if TYPE_CHECKING:
    import httpx

app = typer.Typer(
    help="Tandem: reminders that keep couples' rituals alive.",
    no_args_is_help=True,
    add_completion=False,
    # A traceback with locals would print TANDEM_SECRET_KEY and tokens.
    pretty_exceptions_show_locals=False,
)
dlq_app = typer.Typer(help="Inspect and re-drive dead-lettered records.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

# Where connection trouble surfaces: aiokafka's errors, sockets, and our own timeouts.
UNREACHABLE = (KafkaError, OSError, TimeoutError)
DLQ_SOURCES: tuple[str, ...] = tuple(t for t in ALL_TOPICS if dlq(t) in ALL_TOPICS)


class Service(StrEnum):
    scheduler = "scheduler"
    content = "content"
    notifier = "notifier"


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _kafka_settings() -> Settings:
    """Settings for a command that talks to Kafka and reports its errors itself."""
    # aiokafka logs each failed connection attempt; our one error line says it better.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"TANDEM_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        _fail(f"invalid setting: {problems}")


def _why(exc: BaseException) -> str:
    # asyncio's timeout carries no message of its own.
    return "no answer in time" if type(exc) is TimeoutError else repr(exc)


def _source_topic(topic: str) -> str:
    """The topic whose dead letters are meant; ``nudge.ready`` and ``nudge.ready.dlq`` both
    name the dead letters of ``nudge.ready``."""
    source = topic.removesuffix(".dlq")
    if source not in DLQ_SOURCES:
        raise typer.BadParameter(
            f"{topic!r} has no dead-letter topic; choose one of {', '.join(DLQ_SOURCES)}",
            param_hint="TOPIC",
        )
    return source


@app.command()
def dev(
    demo: Annotated[
        bool, typer.Option(help="Create a demo couple whose nudges land in the local inbox.")
    ] = False,
    demo_in: Annotated[
        float, typer.Option(help="Seconds until the demo ritual first fires.", min=1)
    ] = 40.0,
    replicas: Annotated[
        str | None,
        typer.Option(help="Processes per service, e.g. notifier=3,scheduler=2 (default 1)."),
    ] = None,
    logs: Annotated[
        bool, typer.Option(help="Also print every service's output here (always in log files).")
    ] = False,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where the log files go (default: a new temp dir).")
    ] = None,
) -> None:
    """Run everything locally: broker, Redis, the three services and an inbox."""
    from tandem.dev import parse_replicas, run

    try:
        counts = parse_replicas(replicas)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--replicas") from None
    raise typer.Exit(run(replicas=counts, demo=demo, demo_in=demo_in, logs=logs, run_dir=run_dir))


@app.command()
def keygen() -> None:
    """Print a new key for TANDEM_SECRET_KEY."""
    typer.echo(SecretBox.generate_key())


@app.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt every stored channel URL with TANDEM_SECRET_KEY (the current key).

    Run it with the new key in TANDEM_SECRET_KEY and the old one(s) in
    TANDEM_OLD_SECRET_KEYS; afterwards the old keys can be dropped. Safe to repeat: a URL
    already under the current key is left alone."""
    settings = _kafka_settings()
    try:
        box = SecretBox(settings.require_secret_key(), settings.old_keys())
    except ValueError as exc:
        _fail(str(exc))

    async def rotate() -> Rotation:
        # Imported here: the CLI's other commands (`tandem dev`) need no service code loaded.
        from services.scheduler.access_store import AccessStore
        from services.scheduler.store import SchedulerStore

        redis = make_redis(settings)
        try:
            keys = Keys(settings.redis_prefix)
            vault = Vault(redis, keys, box)
            done = await vault.rotate()
            # Partners' own channels (pending and paused ones live outside the vault).
            kept = await AccessStore(SchedulerStore(redis, keys, vault)).rotate()
            done.rotated += kept.rotated
            done.current += kept.current
            done.unreadable += kept.unreadable
            return done
        finally:
            await redis.aclose()

    try:
        done = asyncio.run(asyncio.wait_for(rotate(), 300))
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        _fail(f"cannot rotate the keys in Redis at {redis_where(settings.redis_url)}: {_why(exc)}")
    typer.echo(
        f"{done.couples} couple(s): re-encrypted {done.rotated} channel URL(s) with the "
        f"current key, {done.current} already current, {done.unreadable} unreadable"
    )
    if done.unreadable:
        _fail(
            f"{done.unreadable} channel URL(s) open with none of the configured keys: "
            "add the key they were written with to TANDEM_OLD_SECRET_KEYS and run again"
        )


@app.command("run")
def run_service(service: Annotated[Service, typer.Argument(help="The service to run.")]) -> None:
    """Run one service in the foreground, configured by the TANDEM_* environment."""
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", f"services.{service.value}"])


@app.command()
def topics(
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to keep retrying while Kafka is unreachable.")
    ] = 60.0,
) -> None:
    """Create Tandem's topics on TANDEM_KAFKA_BOOTSTRAP where they are missing."""
    settings = _kafka_settings()
    deadline = time.monotonic() + wait
    while True:
        try:
            asyncio.run(asyncio.wait_for(ensure_topics(settings), timeout=30))
            break
        except UNREACHABLE as exc:
            if time.monotonic() >= deadline:
                _fail(f"cannot create the topics on {settings.kafka_bootstrap}: {_why(exc)}")
            # A broker that is still starting (compose) answers within seconds.
            time.sleep(2)
    typer.echo(
        f"{len(ALL_TOPICS)} topics ready on {settings.kafka_bootstrap} "
        f"({settings.topic_partitions} partitions for new ones)"
    )


@app.command()
def docs(
    out: Annotated[
        Path | None, typer.Option(help="Write the documents into this folder and exit.")
    ] = None,
    host: Annotated[str, typer.Option(help="Where to serve them.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Where to serve them.")] = 8090,
) -> None:
    """The AsyncAPI (Kafka contracts) and OpenAPI (scheduler HTTP API) documents, generated
    from the code: served on HOST:PORT (the AsyncAPI page at /), or written with --out."""
    from tandem import docs as documents

    if out is not None:
        for path in documents.write(out):
            typer.echo(f"wrote {path}")
        return
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pages = documents.render()
    routes = {"/": ("asyncapi.html", "text/html; charset=utf-8")} | {
        f"/{name}": (name, "application/json") for name in pages if name.endswith(".json")
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name, kind = routes.get(self.path, (None, "text/plain"))
            body = pages[name].encode() if name else b"not found"
            self.send_response(200 if name else 404)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    url = f"http://{host}:{server.server_address[1]}"
    typer.echo(f"AsyncAPI {url}/  (json: {url}/asyncapi.json)  OpenAPI {url}/openapi.json")
    typer.echo("Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


TIMEOUT = typer.Option(min=1, help="Give up after this many seconds.")


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str, typer.Argument(help="e.g. nudge.ready (or nudge.ready.dlq)")],
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
    timeout: Annotated[float, TIMEOUT] = 30.0,
) -> None:
    """Show the dead letters of TOPIC by partition and offset (the offsets `replay` takes)."""
    source = _source_topic(topic)
    from tandem import dlq as dead_letters

    settings = _kafka_settings()
    try:
        records = asyncio.run(
            asyncio.wait_for(dead_letters.read_dead_letters(settings, source, limit), timeout)
        )
    except UNREACHABLE as exc:
        _fail(f"cannot read {dlq(source)} from Kafka at {settings.kafka_bootstrap}: {_why(exc)}")
    if not records:
        typer.echo(f"no dead letters on {dlq(source)}")
        return
    typer.echo(f"{len(records)} dead letter(s) on {dlq(source)}:")
    for record in records:
        letter = record.letter
        typer.echo(
            f"- offset {record.offset} (partition {record.partition})  "
            f"{letter.emitted_at:%Y-%m-%d %H:%M:%S}  from {letter.service}  key={letter.key}"
        )
        typer.echo(f"    reason:  {letter.reason}")
        payload = letter.payload if len(letter.payload) <= 300 else letter.payload[:297] + "..."
        typer.echo(f"    payload: {payload}")


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="e.g. nudge.ready (or nudge.ready.dlq)")],
    offset: Annotated[
        list[int] | None,
        typer.Option(help="Replay only the letter at this offset (repeatable); default: all."),
    ] = None,
    partition: Annotated[
        int | None, typer.Option(min=0, help="Only letters in this partition of the DLQ.")
    ] = None,
    timeout: Annotated[float, TIMEOUT] = 60.0,
) -> None:
    """Publish dead letters of TOPIC back to TOPIC for another try (safe to repeat)."""
    source = _source_topic(topic)
    from tandem import dlq as dead_letters

    settings = _kafka_settings()
    try:
        count = asyncio.run(
            asyncio.wait_for(
                dead_letters.replay(settings, source, offset or None, partition=partition),
                timeout,
            )
        )
    except UNREACHABLE as exc:
        _fail(f"cannot replay {dlq(source)} on Kafka at {settings.kafka_bootstrap}: {_why(exc)}")
    typer.echo(f"replayed {count} dead letter(s) to {source}")


SHOWN_ERRORS = 5  # refused items printed in full; the rest are only counted


@app.command("import")
def import_couples(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON lines: one couple a line.")
    ],
    url: Annotated[
        list[str] | None,
        typer.Option(
            envvar="TANDEM_API_URL",
            help="A scheduler API; repeat it for several replicas, which share the requests "
            "(TANDEM_API_URL: space-separated).",
            show_default="http://localhost:8080",
        ),
    ] = None,
    token: Annotated[
        str, typer.Option(envvar="TANDEM_ADMIN_TOKEN", help="The admin token.", show_default=False)
    ] = "",
    chunk: Annotated[
        int, typer.Option(min=1, max=1000, help="Couples per request (at most 1,000).")
    ] = 500,
    parallel: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Requests in flight at once.", show_default="one per --url"
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 120.0,
) -> None:
    """Create the couples of FILE (each a POST /v1/couples body, optionally with "rituals":
    a list of ritual bodies) through POST /v1/couples/import, CHUNK at a time, PARALLEL
    requests in flight, spread over the URLs in turn. Prints how many were created and
    refused, with the first few refusals by line; exits 1 if any was refused. The created
    couples' tokens are not printed: rotate them to hand them out."""
    import httpx

    if not token:
        _fail("no admin token: pass --token or set TANDEM_ADMIN_TOKEN")
    urls = url or ["http://localhost:8080"]
    tally = _ImportTally()
    headers = {"Authorization": f"Bearer {token}"}
    # One client a slot, each slot's requests one after the other (see _ordered_posts).
    slots = [
        httpx.Client(base_url=urls[i % len(urls)], headers=headers, timeout=timeout)
        for i in range(parallel or len(urls))
    ]
    try:
        with file.open(encoding="utf-8") as lines:
            for batch, results in _ordered_posts(_import_chunks(lines, chunk, tally), slots):
                tally.count(batch, results)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the API at {', '.join(urls)}: {_why(exc)}")
    finally:
        for client in slots:
            client.close()
    tally.report()


def _ordered_posts(
    batches: Iterable[list[tuple[int, object]]], slots: list[httpx.Client]
) -> Iterator[tuple[list[tuple[int, object]], list[dict[str, object]]]]:
    """Each batch with its results, in the batches' order, while up to ``len(slots)`` are
    posted at once: batch ``n`` goes through ``slots[n % len(slots)]`` once batch
    ``n - len(slots)`` -- the slot's previous one -- is answered, so a client is never used
    by two threads at once and no more than ``len(slots)`` batches are held in memory."""
    pending: deque[tuple[list[tuple[int, object]], Future[list[dict[str, object]]]]] = deque()
    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        try:
            for n, batch in enumerate(batches):
                if len(pending) == len(slots):
                    done, answer = pending.popleft()
                    yield done, answer.result()
                pending.append((batch, pool.submit(_post_import, slots[n % len(slots)], batch)))
            while pending:
                done, answer = pending.popleft()
                yield done, answer.result()
        finally:  # a refused request ends the command: send nothing more
            pool.shutdown(cancel_futures=True)


class _ImportTally:
    """What an import created and refused, with the first few refusals by line."""

    def __init__(self) -> None:
        self.created = self.refused = 0
        self.shown: list[str] = []

    def refuse(self, line: int, why: str) -> None:
        self.refused += 1
        if len(self.shown) < SHOWN_ERRORS:
            self.shown.append(f"line {line}: {why}")

    def count(self, batch: list[tuple[int, object]], results: list[dict[str, object]]) -> None:
        """Counts one answered request; each result names its item by index in ``batch``."""
        for result in results:
            line = batch[int(str(result["index"]))][0]
            if "id" in result:
                self.created += 1
            else:
                errors = result["errors"]
                said = (_said(e) for e in errors) if isinstance(errors, list) else ()
                self.refuse(line, "; ".join(said))

    def report(self) -> None:
        """Prints the tally; exits 1 if anything was refused."""
        typer.echo(f"created {self.created}, refused {self.refused}")
        for line in self.shown:
            typer.echo(f"  {line}")
        if self.refused > len(self.shown):
            typer.echo(f"  ... and {self.refused - len(self.shown)} more")
        if self.refused:
            raise typer.Exit(1)


def _import_chunks(
    lines: Iterable[str], chunk: int, tally: _ImportTally
) -> Iterator[list[tuple[int, object]]]:
    """The file's couples as (line number, body) lists of at most ``chunk``; blank lines are
    skipped and a line that is not JSON is refused on the tally, not sent."""
    batch: list[tuple[int, object]] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            batch.append((number, json.loads(text)))
        except json.JSONDecodeError as exc:
            tally.refuse(number, f"not JSON: {exc.msg}")
            continue
        if len(batch) == chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def _post_import(client: httpx.Client, batch: list[tuple[int, object]]) -> list[dict[str, object]]:
    """POSTs one chunk, waiting out 429s (up to five tries); a refused request ends the
    command, since later chunks would be refused alike."""
    for _ in range(5):
        answer = client.post("/v1/couples/import", json={"couples": [i for _, i in batch]})
        if answer.status_code != 429:
            break
        time.sleep(float(answer.headers.get("retry-after", "1")))
    if answer.status_code != 200:
        _fail(f"the API refused the request: {answer.status_code} {answer.text[:300]}")
    results: list[dict[str, object]] = answer.json()["results"]
    return results


def _said(error: dict[str, object]) -> str:
    """One refusal as ``field.path: message`` (the item's index left out: the line says it)."""
    loc = error.get("loc")
    path = ".".join(str(p) for p in loc[1:]) if isinstance(loc, list) else ""
    return f"{path or '(item)'}: {error.get('msg')}"


if __name__ == "__main__":
    app()
