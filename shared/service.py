"""One shape for every Tandem service: broker, Redis, ops endpoints, readiness, lifecycle.

``Service(name, settings)`` is the factory each service builds on:

* ``broker`` (:func:`shared.kafka.make_broker`), ``redis``, and ``app``: a FastStream ASGI app
  (:class:`faststream.asgi.AsgiFastStream`) serving ``/healthz``, ``/readyz`` and
  ``/metrics`` (:func:`shared.ops.ops_routes`), plus whatever :meth:`Service.mount` hands
  it (the scheduler's API).
* :meth:`Service.keyed_subscriber` (couples concurrently, each in order, a commit per
  batch, :class:`shared.kafka.ConsumerPolicy` per record) and :meth:`Service.publisher`:
  consumers with Tandem's policy and typed handlers, publishers declared once with their
  payload model and called at run time, so the AsyncAPI document is the code's.
* :attr:`Service.checks`: readiness, one contract for all (:func:`shared.ops.run_checks`):
  ``redis``, ``kafka`` and ``consumers`` for everyone; a service may refine or add some.
* :meth:`Service.loop`: a background task run while the service runs (the notifier's
  delay-queue drain, the scheduler's firing loop), as FastStream lifecycle hooks.
* One start/stop/signal path: ``async with service`` (tests), :meth:`Service.serve` (the
  process: SIGINT/SIGTERM stop it cleanly, exit code 0) and :func:`main` (every
  ``services/<name>/__main__.py``).

Lifecycle order, on start: topics ensured, the service's own start-up hooks and the
``before_consumers`` loops (in the order they were added), the broker and its consumers,
the other loops, then HTTP. On stop, the reverse: HTTP, loops, broker, Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

import uvicorn
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker

from shared.kafka import (
    ConsumerPolicy,
    KeyedSubscriber,
    ensure_topics,
    make_broker,
    publisher,
)
from shared.logs import setup_logging
from shared.ops import Check, Report, consumer_report, ops_routes, run_checks, tracer_provider
from shared.redis import StrRedis, make_redis
from shared.settings import Settings, get_settings

log = logging.getLogger("tandem.service")

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


# How long an idle keep-alive connection is kept open. Longer than clients keep theirs
# (httpx: 5 s) and than load balancers' idle timeouts (60 s is common): with uvicorn's 5 s
# default, a client reusing a connection just as the server closed it lost that request
# without an answer ("Server disconnected without sending a response"), seen with 16
# requests in flight while creating couples; the client, not the server, must close first.
KEEP_ALIVE_SECONDS = 75

# How long an idle consumer off the herd's path may take to see a record: how long it
# waits between looks (FastStream sleeps that long after an empty poll) and how long the
# broker may hold its empty fetch. Every idle look costs the broker and the service: eight
# consumers looking every 20 ms kept an idle suite at ~70% of one core, the broker at ~30%.
# The urgent lanes: a person pressed "test" or "snooze", and a tenth of a second per hop is
# well inside the blink they wait for.
URGENT_POLL_MS = 100
# A consumer nobody waits on (the scheduler's history): Kafka's own fetch default.
BACKGROUND_POLL_MS = 500


class ServiceApp(AsgiFastStream):
    """FastStream's ASGI app, whose requests for paths it has no route for go to
    ``fallback`` when one is mounted (the scheduler's FastAPI app), else 404. FastStream's
    own routes match exact paths only, which cannot host an API with path parameters."""

    fallback: Any = None

    async def not_found(self, scope: Any, receive: Any, send: Any) -> None:
        if self.fallback is not None and scope["type"] in ("http", "websocket"):
            await self.fallback(scope, receive, send)
            return
        await super().not_found(scope, receive, send)


class Service:
    """One running Tandem service (see the module docstring).

    ``bind`` is where HTTP is served (``None``: no HTTP); when ``bind_required`` a port
    that cannot be bound stops the process (the scheduler's API), otherwise it is logged
    and the service runs on without its ops endpoints. ``redis`` is made from ``settings``
    unless given; one made here is closed when the service stops.
    """

    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        redis: StrRedis | None = None,
        bind: tuple[str, int] | None = None,
        bind_required: bool = False,
    ) -> None:
        self.name = name
        self.settings = settings
        self.redis: StrRedis = redis if redis is not None else make_redis(settings)
        self._own_redis = redis is None
        self.bind = bind
        self.bind_required = bind_required
        self.policy = ConsumerPolicy(name, max_attempts=settings.handler_max_attempts)
        self.broker: KafkaBroker = make_broker(settings, service=name)
        self.subscribers: list[Any] = []
        self.checks: dict[str, Check] = {
            "redis": self._redis_check,
            "kafka": self._kafka_check,
            "consumers": self._consumers_check,
        }
        self._stop = asyncio.Event()
        self._tasks: list[tuple[asyncio.Task[None], float | None]] = []
        self.app = ServiceApp(
            self.broker,
            asgi_routes=ops_routes(self.readiness, self.subscribers),
            logger=logging.getLogger(f"tandem.{name}.app"),
            on_startup=[self._ensure_topics],
            on_shutdown=[self._stop_loops],
            after_shutdown=[self._close_redis],
        )

    # -- building -------------------------------------------------------------------------
    def keyed_subscriber(
        self,
        *topics: str,
        group_id: str,
        concurrency: int | None = None,
        idle_poll_ms: int | None = None,
    ) -> KeyedSubscriber:
        """Tandem's consumer of ``topics`` (:class:`shared.kafka.KeyedSubscriber`): couples
        handled concurrently, each couple's records in order, one commit per batch, the
        policy per record; bounded by ``TANDEM_CONSUMER_CONCURRENCY`` and
        ``TANDEM_CONSUMER_MAX_RECORDS``. Register the handler by decorating it::

            @service.keyed_subscriber(topics.RITUAL_DUE, group_id="content")
            async def on_ritual_due(due: RitualDue, record: Record) -> None:
                await record.publish(ready, nudge, key=due.couple_id)

        ``concurrency``: a lower limit than ``TANDEM_CONSUMER_CONCURRENCY`` for a consumer
        off the nudges' path (the setting still caps it). ``idle_poll_ms``: how long this
        consumer may take to see a record while idle (:data:`URGENT_POLL_MS`,
        :data:`BACKGROUND_POLL_MS`), for one off the herd's path; the settings' shorter
        waits are the nudges' (a longer setting still wins). Watched by readiness and
        metrics."""
        limit = self.settings.consumer_concurrency
        batch_ms = max(idle_poll_ms or 0, self.settings.consumer_batch_timeout_ms)
        fetch_ms = max(idle_poll_ms or 0, self.settings.consumer_fetch_max_wait_ms)
        consumer = KeyedSubscriber(
            self.broker,
            self.policy,
            *topics,
            group_id=group_id,
            concurrency=min(concurrency or limit, limit),
            max_records=self.settings.consumer_max_records,
            batch_timeout_ms=batch_ms,
            fetch_max_wait_ms=fetch_ms,
            tracer=self._tracer(),
        )
        self.subscribers.append(consumer.subscriber)
        return consumer

    def _tracer(self) -> Any:
        """The service's tracer when tracing is on (``TANDEM_OTLP_ENDPOINT``), else None."""
        if not self.settings.otlp_endpoint:
            return None
        return tracer_provider(self.settings.otlp_endpoint, self.name).get_tracer("tandem.kafka")

    def publisher(self, topic: str) -> Any:
        """The publisher of ``topic`` (:func:`shared.kafka.publisher`):
        ``await publisher.publish(event, key=...)``."""
        return publisher(self.broker, topic, service=self.name)

    def on_startup(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` at start, before the consumers (a failure aborts the start)."""
        self.app.on_startup(hook)

    def loop(
        self, run: Loop, *, before_consumers: bool = False, grace: float | None = None
    ) -> None:
        """Run ``run(stop)`` as a task while the service runs; ``stop`` is set when it
        stops, and the task gets ``grace`` seconds (forever if ``None``) to return before
        it is cancelled. ``before_consumers``: start as soon as the producer is connected,
        without waiting for the consumers' group joins (which after a crash take until the
        dead member's session expired)."""

        async def start() -> None:
            if before_consumers:
                await self.broker.connect()
            self._stop.clear()
            task = asyncio.create_task(run(self._stop), name=f"{self.name}-{run.__name__}")
            self._tasks.append((task, grace))

        if before_consumers:
            self.app.on_startup(start)
        else:
            self.app.after_startup(start)

    def mount(self, api: Any) -> None:
        """Serve ``api`` (an ASGI app) for every path the ops routes do not answer."""
        self.app.fallback = api

    # -- readiness ------------------------------------------------------------------------
    async def readiness(self) -> Report:
        """The readiness report (:func:`shared.ops.run_checks` over :attr:`checks`)."""
        return await run_checks(self.name, self.checks)

    async def _redis_check(self) -> dict[str, Any]:
        await self.redis.ping()  # type: ignore[misc]
        return {}

    async def _kafka_check(self) -> dict[str, Any]:
        return {"ok": bool(await self.broker.ping(timeout=2))}

    async def _consumers_check(self) -> dict[str, Any]:
        return await consumer_report(self.subscribers)

    # -- lifecycle ------------------------------------------------------------------------
    async def _ensure_topics(self) -> None:
        await ensure_topics(self.settings)

    async def _stop_loops(self) -> None:
        self._stop.set()
        for task, grace in self._tasks:
            try:
                await asyncio.wait_for(asyncio.shield(task), grace)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()

    async def _close_redis(self) -> None:
        if self._own_redis:
            await self.redis.aclose()

    async def start(self) -> None:
        """Start everything but HTTP (see the module docstring for the order)."""
        try:
            await self.app.start()
        except BaseException:
            await self._stop_loops()  # a loop started before the consumers failed to
            raise

    async def stop(self) -> None:
        """Stop loops, consumers and broker, then close Redis."""
        await self.app.stop()

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def serve(self) -> int:
        """Run until SIGINT or SIGTERM, serving HTTP on ``bind`` if set; then stop cleanly.
        Returns the exit code (0). The handlers go in before the start: a signal while the
        consumers are still joining their groups is a clean stop too, not death by the
        default action (uvicorn re-raises the signal it caught once it has shut down,
        which then lands here)."""
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await self.start()
        try:
            await self._serve_http(stopping)
        finally:
            await self.stop()
        return 0

    async def _serve_http(self, stopping: asyncio.Event) -> None:
        if self.bind is None:
            await stopping.wait()
            return
        host, port = self.bind
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            # No handlers of uvicorn's own: its records reach the root handler, whose
            # filter masks what is private (shared/logs.py).
            log_config=None,
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(self._listen(server), name=f"{self.name}-http")
        waiting = asyncio.create_task(stopping.wait())
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        waiting.cancel()
        if not await serving:
            if self.bind_required:
                raise SystemExit(1)
            # The service is more use running without its ops endpoints than not at all.
            await stopping.wait()

    async def _listen(self, server: uvicorn.Server) -> bool:
        """Serve until told to stop; False if the port could not be bound."""
        host, port = self.bind or ("", 0)
        log.info("%s: HTTP on http://%s:%s (/healthz /readyz /metrics)", self.name, host, port)
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits the process when it cannot bind
            log.error("%s could not listen on %s:%s", self.name, host, port)
            return False
        return True


def main(
    name: str,
    build: Callable[[Settings], Service],
    *,
    fatal: tuple[type[Exception], ...] = (),
) -> None:
    """``python -m services.<name>``: settings from ``TANDEM_*``, logging, then
    ``build(settings).serve()`` until SIGINT/SIGTERM. An exception of a ``fatal`` type
    while building (a broken deck) is logged and exits 2, without a traceback."""
    settings = get_settings()
    setup_logging(settings, service=name)
    try:
        service = build(settings)
    except fatal as exc:
        logging.getLogger(f"tandem.{name}").error("%s", exc)
        sys.exit(2)
    sys.exit(asyncio.run(service.serve()))
