"""``tandem dev``: the whole of Tandem on one machine, with nothing to install.

:class:`DevStack` starts an embedded Kafka-protocol broker and a Redis (unless
``TANDEM_KAFKA_BOOTSTRAP`` / ``TANDEM_REDIS_URL`` point elsewhere), creates the topics, runs
the three services as separate processes, each as often as asked, and a local inbox that
stands in for the partners' phones. :func:`run` is the terminal front end: it prints where
everything is, optionally creates a demo couple, and stops it all on Ctrl-C / SIGTERM or
when a service dies.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
from pydantic import ValidationError

from shared.egress import join_allow
from shared.kafka import ensure_topics
from shared.secrets import SecretBox
from shared.settings import Settings
from tandem.embedded import Process, free_port, start_broker, start_redis
from tandem.inbox import Inbox, Received
from tandem.inbox_page import InboxPage

SERVICES: tuple[str, ...] = ("scheduler", "content", "notifier")
DEFAULT_API_PORT = 8080
DEFAULT_PARTITIONS = 6


class StartupError(RuntimeError):
    """The stack could not start; the message says why and what to change."""


class ChildDied(RuntimeError):
    """A service process exited while the stack was meant to be running."""


def parse_replicas(spec: str | None) -> dict[str, int]:
    """Turn ``"notifier=3,scheduler=2"`` into a count for every service (default 1).

    Raises ValueError, with a message fit for a user, on an unknown service, a count that is
    not a positive integer, or a service named twice.
    """
    counts = dict.fromkeys(SERVICES, 1)
    seen: set[str] = set()
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in counts:
            raise ValueError(
                f"{item!r} is not SERVICE=COUNT with SERVICE one of {', '.join(SERVICES)} "
                "(e.g. notifier=3,scheduler=2)"
            )
        if name in seen:
            raise ValueError(f"{name} is given twice")
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"{name}={value.strip()!r}: the count must be a whole number >= 1")
        counts[name] = count
        seen.add(name)
    return counts


def settings_from(env: Mapping[str, str]) -> Settings:
    """The :class:`Settings` that a process started with ``env`` would read."""
    fields = Settings.model_fields
    values = {
        key.removeprefix("TANDEM_").lower(): value
        for key, value in env.items()
        if key.startswith("TANDEM_") and key.removeprefix("TANDEM_").lower() in fields
    }
    return Settings(**values)  # type: ignore[arg-type]


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # uvicorn binds with SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


@dataclass
class Child:
    """One service process of the stack."""

    name: str  # "notifier-2", or just "content" when there is one
    proc: subprocess.Popen[bytes]
    log_path: Path
    pump: threading.Thread
    api_url: str | None = None  # scheduler replicas only
    ops_url: str | None = None  # /healthz, /readyz, /metrics (the API, for a scheduler)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class DevStack:
    """Tandem's infrastructure and services as local child processes.

    ``start()`` returns once every scheduler replica answers ``/healthz``; ``stop()`` ends
    every process it started (services first, then broker and Redis) and is safe to call
    twice. Both are blocking and must not be called from a running event loop.

    ``echo`` receives every line meant for a person: service output prefixed with the
    replica's name (when ``show_service_output``) and one line per notification the inbox
    receives. Service output always goes to ``<run_dir>/<name>.log`` as well.
    """

    def __init__(
        self,
        *,
        replicas: Mapping[str, int] | None = None,
        environ: Mapping[str, str] | None = None,
        run_dir: Path | None = None,
        echo: Callable[[str], None] | None = None,
        show_service_output: bool = True,
        color: bool = False,
    ) -> None:
        self.replicas = {name: (replicas or {}).get(name, 1) for name in SERVICES}
        self._environ = dict(os.environ if environ is None else environ)
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="tandem-dev-"))
        self._echo = echo or (lambda line: None)
        self._show_service_output = show_service_output
        self._color = color
        self.notes: list[str] = []  # what was chosen for the user, worth telling them
        self.env: dict[str, str] = {}
        self.settings: Settings | None = None
        self.api_url = ""
        self.admin_token = ""
        self.inbox = Inbox(on_receive=self._on_receive)
        self.page = InboxPage(self.inbox)  # the inbox as a live web page of phones
        self.infra: list[Process] = []
        self.children: list[Child] = []
        self._inbox_started = False
        self._name_width = max(len(name) for _, _, name in self._replicas())

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> DevStack:
        """Start everything; on any failure stop what was started and raise
        :class:`StartupError` or :class:`ChildDied`."""
        try:
            self._configure()
            self._start_infra()
            self.inbox.start()
            self._inbox_started = True
            self.page.api_url, self.page.admin_token = self.api_url, self.admin_token
            self.page.start()
            for service, index, name in self._replicas():
                self._spawn(service, index, name)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the services (SIGTERM, then SIGKILL after ``timeout``), the inbox, then
        the broker and Redis. Safe to repeat, also after an interrupted stop."""
        for child in self.children:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in self.children:
            # Whatever is left: a service that ignored SIGTERM, or what a service spawned.
            _signal_group(child.proc, signal.SIGKILL)
            child.proc.wait()
        for child in self.children:
            child.pump.join(2)
        if self._inbox_started:
            self._inbox_started = False
            self.page.stop()
            self.inbox.stop()
        for process in reversed(self.infra):
            process.stop()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------
    @property
    def scheduler_urls(self) -> list[str]:
        return [c.api_url for c in self.children if c.api_url]

    def dead(self) -> Child | None:
        """The first service process that has exited, if any."""
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def pids(self) -> dict[str, int]:
        """Every process this stack started, by name."""
        found = {p.name: p.proc.pid for p in self.infra}
        found.update({c.name: c.proc.pid for c in self.children})
        return found

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Block until every scheduler replica answers ``GET /healthz`` with 200."""
        deadline = time.monotonic() + timeout
        pending = list(self.scheduler_urls)
        # trust_env=False: a proxy configured for the outside world must not see local calls.
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while pending:
                dead = self.dead()
                if dead is not None:
                    raise _died(dead)
                try:
                    if client.get(f"{pending[0]}/healthz").status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise StartupError(
                        f"{pending[0]}/healthz did not answer 200 within {timeout:.0f}s; "
                        f"see the logs in {self.run_dir}"
                    )
                time.sleep(0.2)

    # -- internals ---------------------------------------------------------------------
    def _configure(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(self._environ)
        if not env.get("TANDEM_ADMIN_TOKEN"):
            env["TANDEM_ADMIN_TOKEN"] = secrets.token_urlsafe(24)
        if not env.get("TANDEM_SECRET_KEY"):
            env["TANDEM_SECRET_KEY"] = SecretBox.generate_key()
            if env.get("TANDEM_REDIS_URL"):
                # Channel URLs written now cannot be read by a later run with another key.
                self.notes.append(
                    "TANDEM_SECRET_KEY was not set: generated one for this run "
                    f"(export TANDEM_SECRET_KEY={env['TANDEM_SECRET_KEY']} to keep "
                    "reading what this run stores in your Redis)"
                )
        env.setdefault("TANDEM_TOPIC_PARTITIONS", str(DEFAULT_PARTITIONS))
        env.setdefault("TANDEM_LOG_FORMAT", "console")
        env["PYTHONUNBUFFERED"] = "1"  # service lines reach the terminal as they are written
        # The inbox's own sinks, and nothing else on loopback, join the egress exceptions.
        env["TANDEM_CHANNEL_ALLOW"] = join_allow(env.get("TANDEM_CHANNEL_ALLOW"), self.inbox.allow)
        # The partners' channel forms (ntfy topic, e-mail, SMS, Signal) reach the inbox too.
        for name, value in inbox_gateways(self.inbox).items():
            env.setdefault(name, value)
        try:
            settings = settings_from(env)
        except ValidationError as exc:
            problems = "; ".join(
                f"TANDEM_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise StartupError(f"invalid setting: {problems}") from None
        if "TANDEM_API_PORT" in env:
            if not _port_free(settings.api_host, settings.api_port):
                raise StartupError(
                    f"TANDEM_API_PORT={settings.api_port} is already in use on "
                    f"{settings.api_host}; stop what holds it or choose another port"
                )
        elif _port_free(settings.api_host, DEFAULT_API_PORT):
            settings.api_port = DEFAULT_API_PORT
        else:
            settings.api_port = free_port()
            self.notes.append(
                f"port {DEFAULT_API_PORT} is taken: the API listens on {settings.api_port} "
                "instead (set TANDEM_API_PORT to choose)"
            )
        env["TANDEM_API_PORT"] = str(settings.api_port)
        self.env, self.settings = env, settings
        self.admin_token = env["TANDEM_ADMIN_TOKEN"]
        self.api_url = f"http://{_client_host(settings.api_host)}:{settings.api_port}"

    def _start_infra(self) -> None:
        assert self.settings is not None
        if not self.env.get("TANDEM_REDIS_URL"):
            redis = start_redis()
            self.infra.append(redis)
            self.env["TANDEM_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
        if not self.env.get("TANDEM_KAFKA_BOOTSTRAP"):
            broker = start_broker(log=self.run_dir / "kafka.log")
            self.infra.append(broker)
            self.env["TANDEM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{broker.port}"
            # The embedded broker (Tansu, memory storage) has no idempotent producer.
            self.env["TANDEM_KAFKA_IDEMPOTENCE"] = "false"
        self.settings = settings_from(self.env)
        try:
            asyncio.run(asyncio.wait_for(ensure_topics(self.settings), 30))
        except Exception as exc:
            raise StartupError(
                f"cannot create the topics on {self.settings.kafka_bootstrap}: "
                f"{exc or type(exc).__name__}"
            ) from None

    def _replicas(self) -> list[tuple[str, int, str]]:
        """(service, index, name) of every process to run; a lone replica keeps the plain
        service name."""
        return [
            (service, index, service if count == 1 else f"{service}-{index + 1}")
            for service, count in self.replicas.items()
            for index in range(count)
        ]

    def _spawn(self, service: str, index: int, name: str) -> None:
        assert self.settings is not None
        env = dict(self.env)
        api_url = None
        if service == "scheduler":
            # Every scheduler replica serves the API; only the first gets the advertised port.
            port = self.settings.api_port if index == 0 else free_port()
            env["TANDEM_API_PORT"] = str(port)
            api_url = f"http://{_client_host(self.settings.api_host)}:{port}"
            ops_url = api_url
        else:
            # Content and notifier serve their ops endpoints only when given a port.
            ops_port = free_port()
            env["TANDEM_OPS_PORT"] = str(ops_port)
            ops_url = f"http://{_client_host(self.settings.ops_host)}:{ops_port}"
        log_path = self.run_dir / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C reaches only us, and we stop the services in
            # order (and with whatever they spawned) instead of all at once.
            start_new_session=True,
        )
        assert proc.stdout is not None
        pump = threading.Thread(
            target=self._pump, args=(name, proc.stdout, log_path), name=f"pump-{name}", daemon=True
        )
        self.children.append(Child(name, proc, log_path, pump, api_url, ops_url))
        pump.start()

    def _pump(self, name: str, stream: IO[bytes], log_path: Path) -> None:
        prefix = self._dim(f"{name:<{self._name_width}} |")
        with stream, log_path.open("ab") as log:
            for raw in stream:
                log.write(raw)
                log.flush()
                if self._show_service_output:
                    line = raw.decode(errors="replace").rstrip()
                    self._echo(f"{prefix} {line}")

    def _on_receive(self, item: Received) -> None:
        self._echo(format_received(item, color=self._color))

    def _dim(self, text: str) -> str:
        return f"\033[2m{text}\033[0m" if self._color else text


def inbox_gateways(inbox: Inbox) -> dict[str, str]:
    """Settings that make the web app's channel forms land in ``inbox``: its ntfy server,
    an SMTP relay and SMS/Signal gateways (each with the placeholder the form fills)."""
    sms = inbox.sms_url("{number}").replace(quote("{number}"), "{number}")
    return {
        "TANDEM_NTFY_SERVER": f"http://127.0.0.1:{inbox.http_port}",
        "TANDEM_SMTP_RELAY": inbox.mailto_url("{address}").replace(quote("{address}"), "{address}"),
        "TANDEM_SMS_GATEWAY": sms,
        "TANDEM_SIGNAL_GATEWAY": sms,
    }


def format_received(item: Received, *, color: bool = False) -> str:
    """One readable line for a notification as a partner's device got it."""
    channel = "email" if item.sink == "smtp" else "push"
    body = " / ".join(part.strip() for part in item.body.splitlines() if part.strip())
    if len(body) > 160:
        body = body[:157] + "..."
    when = datetime.fromtimestamp(item.at).strftime("%H:%M:%S")
    line = f"INBOX {when}  {item.address:<22} {channel:<5}  {item.title}  |  {body}"
    return f"\033[1;35m{line}\033[0m" if color else line


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # Signal the group even when the service itself is gone: what it spawned may live on.
    # Linux does not reuse a PID while a process group of that id exists, so this is safe.
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _died(child: Child) -> ChildDied:
    tail = child.tail()
    detail = f"; its last output:\n{tail}" if tail else ""
    return ChildDied(f"{child.name} exited with code {child.proc.returncode}{detail}")


# -- the demo ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    couple_id: str
    couple_token: str
    ritual_id: str
    first_at: str  # naive local time in the ritual's zone


DEMO_ZONE = "Europe/Berlin"  # the demo ritual's time zone (Sam's)


def create_demo(stack: DevStack, *, first_in: float = 40.0) -> Demo:
    """Create, through the HTTP API, a couple in two time zones whose channels point at the
    stack's inbox, and an evening check-in that fires in ``first_in`` seconds and then
    every three minutes; the inbox page follows that couple. Raises httpx.HTTPError when the
    API refuses."""
    start = (datetime.now(ZoneInfo(DEMO_ZONE)) + timedelta(seconds=first_in)).replace(
        tzinfo=None, microsecond=0
    )
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(
        base_url=stack.api_url, headers=headers, timeout=10.0, trust_env=False
    ) as client:
        created = client.post("/v1/couples", json=demo_couple(stack.inbox))
        created.raise_for_status()
        couple_id = created.json()["id"]
        ritual = client.post(f"/v1/couples/{couple_id}/rituals", json=demo_ritual(start))
        ritual.raise_for_status()
    stack.page.follow(couple_id)
    return Demo(
        couple_id=couple_id,
        couple_token=created.json()["token"],
        ritual_id=ritual.json()["id"],
        first_at=f"{start.isoformat(timespec='seconds')} {DEMO_ZONE}",
    )


def demo_couple(inbox: Inbox) -> dict[str, Any]:
    """Sam in Berlin and Alex in New York, each with a push and an e-mail channel at
    ``inbox``, and no quiet hours (a demo must buzz at any hour)."""
    return {
        "name": "Sam & Alex",
        "partners": [
            {
                "name": "Sam",
                "timezone": "Europe/Berlin",
                "channels": [
                    {"url": inbox.json_url("sam-phone"), "kind": "push"},
                    {"url": inbox.mailto_url("sam@example.com"), "kind": "email"},
                ],
                "quiet_hours": None,
            },
            {
                "name": "Alex",
                "timezone": "America/New_York",
                "channels": [
                    {"url": inbox.ntfy_url("alex-phone"), "kind": "push"},
                    {"url": inbox.mailto_url("alex@example.com"), "kind": "email"},
                ],
                "quiet_hours": None,
            },
        ],
    }


def demo_ritual(start: datetime) -> dict[str, Any]:
    """An evening check-in together every three minutes from ``start`` (wall time in
    ``DEMO_ZONE``)."""
    return {
        "kind": "evening_checkin",
        "title": "Evening check-in",
        "schedule": {
            "rrule": "FREQ=MINUTELY;INTERVAL=3",
            "timezone": DEMO_ZONE,
            "start": start.isoformat(timespec="seconds"),
        },
        "delivery": "together",
        "rotation": None,
        "deck": None,
    }


@dataclass(frozen=True)
class Invited:
    """A couple the first partner started through the web app's API, waiting for the
    second: the link that partner opens, and the first partner's token."""

    couple_id: str
    invite_url: str
    partner_token: str


INVITER_TOPIC = "robin-phone"  # the inviting partner's verified ntfy topic at the inbox


def create_invited(stack: DevStack, *, code_timeout: float = 30.0) -> Invited:
    """Start a couple as Robin (Europe/Lisbon) through the partners' API, verify Robin's
    phone (an ntfy topic at the stack's inbox, with the code the inbox receives) and return
    the invite link: whoever opens it joins as the second partner, adds their own channel
    on the web page and reads its code on the inbox page. Raises httpx.HTTPError when the
    API refuses, TimeoutError when no code arrives."""
    with httpx.Client(base_url=stack.api_url, timeout=10.0, trust_env=False) as client:
        started = client.post(
            "/v1/start",
            json={"name": "Robin", "timezone": "Europe/Lisbon", "couple_name": "Robin & you"},
        )
        started.raise_for_status()
        entry = started.json()
        couple_id, partner_id = entry["couple"]["id"], entry["partner_id"]
        headers = {"Authorization": f"Bearer {entry['token']}"}
        channels = f"/v1/couples/{couple_id}/partners/{partner_id}/channels"
        added = client.post(
            channels, json={"type": "ntfy", "topic": INVITER_TOPIC}, headers=headers
        )
        added.raise_for_status()
        got = stack.inbox.wait_for(
            lambda r: any(i.address == INVITER_TOPIC for i in r), timeout=code_timeout
        )
        found = re.search(
            r"\b(\d{3}) ?(\d{3})\b", [i for i in got if i.address == INVITER_TOPIC][-1].body
        )
        code = found[1] + found[2] if found else ""
        verified = client.post(
            f"{channels}/{added.json()['id']}/verify", json={"code": code}, headers=headers
        )
        verified.raise_for_status()
    return Invited(couple_id, entry["invite"]["url"], entry["token"])


# -- the terminal front end ----------------------------------------------------------------


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(
    *,
    replicas: Mapping[str, int] | None = None,
    demo: bool = False,
    demo_in: float = 40.0,
    logs: bool = False,
    run_dir: Path | None = None,
) -> int:
    """Run the dev stack in the foreground until Ctrl-C / SIGTERM (exit code 0) or until it
    cannot start or a service dies (exit code 1). Everything started is stopped on return.

    Service output goes to log files under the run directory, and with ``logs`` also to the
    terminal: what a newcomer wants to see first is the nudges, so they stay uncluttered."""
    lock = threading.Lock()

    def say(line: str = "") -> None:
        with lock:
            print(line, flush=True)

    color = sys.stdout.isatty()
    stack = DevStack(
        replicas=replicas, run_dir=run_dir, echo=say, show_service_output=logs, color=color
    )
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        say(f"starting the Tandem dev stack (logs in {stack.run_dir}) ...")
        stack.start()
        _print_banner(stack, say)
        if demo:
            _print_demo(stack, create_demo(stack, first_in=demo_in), say)
            _print_invited(stack, say)
        say("Nudges appear as INBOX lines when they land. Press Ctrl-C to stop.")
        while (dead := stack.dead()) is None:
            time.sleep(0.3)
        raise _died(dead)
    except _Stop as exc:
        say(f"{exc}: stopping ...")
    except (StartupError, ChildDied) as exc:
        say(f"error: {exc}")
        code = 1
    except httpx.HTTPStatusError as exc:
        say(
            f"error: the demo request {exc.request.method} {exc.request.url} got "
            f"{exc.response.status_code}: {exc.response.text[:500]}"
        )
        code = 1
    except httpx.HTTPError as exc:
        say(f"error: the demo could not talk to the API: {exc!r}")
        code = 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave processes behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(f"stopped every process; logs are in {stack.run_dir}")
    return code


def _print_banner(stack: DevStack, say: Callable[[str], None]) -> None:
    settings = stack.settings
    assert settings is not None
    inbox = stack.inbox
    embedded = {p.name for p in stack.infra}
    say("")
    say("Tandem dev stack is up")
    say(f"  API          {stack.api_url}")
    for url in stack.scheduler_urls[1:]:
        say(f"  API replica  {url}")
    say(f"  admin token  {stack.admin_token}")
    kafka_kind = "embedded Tansu" if "kafka" in embedded else "external"
    say(
        f"  Kafka        {settings.kafka_bootstrap} ({kafka_kind}, "
        f"{settings.topic_partitions} partitions per topic)"
    )
    redis_kind = "embedded" if "redis" in embedded else "external"
    say(f"  Redis        {settings.redis_url} ({redis_kind})")
    say(
        f"  inbox push   json://127.0.0.1:{inbox.http_port}/<name>  "
        f"ntfy://127.0.0.1:{inbox.http_port}/<topic>"
    )
    say(
        f"  inbox email  mailto://127.0.0.1:{inbox.smtp_port}?to=<you@example.com>"
        "&from=tandem@example.com&mode=insecure"
    )
    say(f"  inbox page   {stack.page.url}  (the partners' phones, live)")
    say("  pids         " + " ".join(f"{name}={pid}" for name, pid in stack.pids().items()))
    for child in stack.children:
        say(f"  metrics      {child.name}: {child.ops_url}/metrics  (and /healthz /readyz)")
    say(f"  logs         {stack.run_dir}  (follow: tail -f {stack.run_dir}/*.log)")
    for note in stack.notes:
        say(f"  note         {note}")
    say("")


def _print_invited(stack: DevStack, say: Callable[[str], None]) -> None:
    """Prepare and print the invited couple; a stack whose API has no partners' door (an
    older scheduler) gets a note instead, and the rest of the demo runs on."""
    try:
        invited = create_invited(stack)
    except (httpx.HTTPError, TimeoutError) as exc:
        say(
            f"note: the invited couple could not be prepared ({exc}); the web app is at "
            f"{stack.api_url}/app/"
        )
        say("")
        return
    say("Partners' web app: Robin (Europe/Lisbon) started a couple and invited you")
    say(f"  invite link   {invited.invite_url}")
    say("                open it in a browser to join as the second partner, then add your")
    say("                phone (an ntfy topic, or e-mail you@example.com): the code lands in")
    say(f"                the inbox ({stack.page.url}) and as an INBOX line here")
    say(f"  start anew    {stack.api_url}/app/  (start a couple of your own)")
    say("")


def _print_demo(stack: DevStack, demo: Demo, say: Callable[[str], None]) -> None:
    say("Demo couple 'Sam & Alex' (Sam: Europe/Berlin, Alex: America/New_York)")
    say(f"  couple id     {demo.couple_id}")
    say(f"  couple token  {demo.couple_token}")
    say(
        f"  ritual        {demo.ritual_id}: evening check-in, first at {demo.first_at}, "
        "then every 3 minutes, together"
    )
    say(
        f"  upcoming      curl -H 'Authorization: Bearer {stack.admin_token}' "
        f"'{stack.api_url}/v1/rituals/{demo.ritual_id}/upcoming?count=5'"
    )
    say(
        "  inbox         Sam: push sam-phone, email sam@example.com; "
        "Alex: push alex-phone, email alex@example.com"
    )
    say("")
