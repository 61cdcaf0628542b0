"""One gateway worker process: HTTP API, dispatchers and connectors on one
event loop. Workers keep no state of their own (it all lives in Redis), so any
number of them can run and any one can die."""

from __future__ import annotations

import asyncio
import gc
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvicorn

from gateway.connectors import Connector, make_connector
from gateway.core import logs, metrics, numbers
from gateway.core.config import Settings
from gateway.core.processes import consumer_name
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.housekeeper import Housekeeper
from gateway.dispatch.takeover import Takeover
from gateway.ingress.http.app import create_app
from gateway.ingress.http.protocol import protocol_class
from gateway.ingress.http.submit import PATH as SUBMIT_PATH
from gateway.notify.webhooks import Webhooks
from gateway.receipts.dlr import Receipts
from gateway.receipts.inbound import Inbound
from gateway.receipts.mo import MoRouter
from gateway.receipts.provider_http import receipts_router
from gateway.store import REDIS_AWAY, Store

log = logs.get("smsgw.server")

# A long-running task that fails this many times within TASK_FAILURE_WINDOW
# seconds (for a reason other than Redis being unreachable) ends the worker with
# EXIT_TASKS_FAILING, and the supervisor starts a fresh one.
TASK_FAILURE_LIMIT = 5
TASK_FAILURE_WINDOW = 60.0
EXIT_TASKS_FAILING = 70
# Backoff between restarts of a failed task: doubling from the first to the cap.
TASK_BACKOFF_FIRST = 0.1
TASK_BACKOFF_CAP = 2.0



class TaskHealth:
    """Which of this worker's long-running tasks are running right now (not
    failed and waiting to restart); read by /readyz and `smsgw status`."""

    def __init__(self) -> None:
        self.running: dict[str, bool] = {}
        self.failures: dict[str, int] = {}
        self.fatal = False

    def dispatchers_running(self) -> int:
        return sum(1 for name, up in self.running.items() if up and name.startswith("dispatcher:"))

    def dispatchers(self) -> int:
        return sum(1 for name in self.running if name.startswith("dispatcher:"))


async def supervised(name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event,
                     health: TaskHealth) -> None:
    """Run `run()` until `stop` is set, restarting it with backoff whenever it
    raises; each failure is logged at once. Failures other than Redis being
    unreachable that repeat (TASK_FAILURE_LIMIT within TASK_FAILURE_WINDOW)
    set `health.fatal` and `stop`: the worker exits non-zero."""
    failures: list[float] = []
    delay = TASK_BACKOFF_FIRST
    while not stop.is_set():
        health.running[name] = True
        started = time.monotonic()
        try:
            await run()
            if stop.is_set():
                return
            raise RuntimeError(f"task {name} returned without being stopped")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.running[name] = False
            health.failures[name] = health.failures.get(name, 0) + 1
            redis_away = isinstance(exc, REDIS_AWAY)
            log.error("task_failed", task=name, error=repr(exc), redis_away=redis_away,
                      failures=health.failures[name])
            now = time.monotonic()
            if now - started > TASK_FAILURE_WINDOW:
                delay = TASK_BACKOFF_FIRST  # it had been running fine: start over
            if not redis_away:
                failures = [t for t in failures if now - t < TASK_FAILURE_WINDOW] + [now]
                if len(failures) >= TASK_FAILURE_LIMIT:
                    log.error("task_failing_repeatedly", task=name, failures=len(failures),
                              window_s=TASK_FAILURE_WINDOW)
                    health.fatal = True
                    stop.set()
                    return
        try:
            await asyncio.wait_for(stop.wait(), random.uniform(delay / 2, delay))
        except TimeoutError:
            pass
        delay = min(TASK_BACKOFF_CAP, delay * 2)


def http_socket(host: str, port: int) -> socket.socket:
    """A listening socket with SO_REUSEPORT, so N workers share one HTTP port
    and the kernel spreads connections between them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def add_provider_receipts(app: Any, settings: Settings, receipts: Receipts) -> None:
    if not any(c.kind == "http" for c in settings.connectors.values()):
        return
    # Its Problems are answered by the app's own handler (gateway/ingress/http/problems.py).
    app.include_router(receipts_router(settings.connectors, receipts))


async def serve(settings: Settings, redis_url: str, worker: int = 0,
                claim_from: Sequence[str] = ()) -> None:
    """Run one worker until SIGTERM/SIGINT. `claim_from`: consumer names of dead
    workers whose lane entries this one takes over at once (the supervisor
    names the worker this one replaces; gateway/dispatch/takeover.py)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    numbers.configure(settings.messages.number_cache)
    # A batch allocates ~10 container objects per recipient, so the default gen-0
    # threshold (700) ran the cyclic GC every ~70 messages and the older
    # generations kept re-walking long-lived state (the number cache holds a
    # tracked list per entry). Fewer, larger young collections, and nothing from
    # start-up (modules, config, app) is ever walked again.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    store = Store.from_url(redis_url, settings.messages.receipt_grace,
                           cluster=settings.redis.cluster, shards=settings.redis.shards)
    consumer = consumer_name()
    # Each stage gets the config sections it reads, no more.
    webhooks = Webhooks(settings.webhooks, settings.accounts, store, consumer)
    receipts = Receipts(store, settings.connectors, settings.retry)
    mo = MoRouter(settings.webhooks, settings.accounts, store, webhooks)
    inbound = Inbound(receipts, mo)
    connectors: dict[str, Connector] = {}
    dispatchers: list[Dispatcher] = []
    takeover = Takeover(store, consumer, settings.connectors, claim_from)
    housekeeper = Housekeeper(store, consumer=consumer,
                              claim_idle_ms=settings.dispatch.claim_idle_ms,
                              retention=settings.messages.retention,
                              identity=takeover.record)
    for name, conn in settings.connectors.items():
        connector = make_connector(name, conn, inbound)
        connectors[name] = connector
        dispatchers.append(Dispatcher(
            connector, store, receipts, consumer, takeover, dispatch=settings.dispatch,
            retry=settings.retry, throttle=settings.throttle, carriers=settings.carriers))

    tasks: list[asyncio.Task[None]] = []
    health = TaskHealth()
    server: uvicorn.Server | None = None
    if settings.http.enabled:
        app = create_app(settings, store, worker)
        app.state.task_health = health  # for /readyz
        add_provider_receipts(app, settings, receipts)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http=protocol_class(settings.http, {SUBMIT_PATH.encode(): app.submitter.answer}),
            # The client address is the TCP peer's: X-Forwarded-For from
            # loopback would let anyone there pick the source that failed-key
            # counting blocks (docs/security.md).
            proxy_headers=False,
            timeout_keep_alive=settings.http.keepalive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=5,
            ssl_certfile=settings.http.tls_cert,  # HTTPS when set (docs/security.md)
            ssl_keyfile=settings.http.tls_key,
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        sock = http_socket(settings.http.host, settings.http.port)
        tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
    for connector in connectors.values():
        connector.start()

    def watch(name: str, run: Callable[[], Awaitable[None]]) -> None:
        tasks.append(asyncio.create_task(supervised(name, run, stop, health)))

    for d in dispatchers:
        watch(f"dispatcher:{d.name}", d.run)
    watch("housekeeper", housekeeper.run)
    watch("report", lambda: _report(store, consumer, connectors, stop, health))
    watch("metrics", lambda: _publish_metrics(store, worker, stop))
    if settings.webhooks.enabled:
        watch("webhooks", webhooks.run)
        if mo.wanted():  # no MO webhooks, nothing to give up on
            watch("mo_overdue", mo.run)
    if server is not None:
        submitter = app.submitter
        watch("auth_blocks", lambda: submitter.follow_blocks(stop))
    log.info("worker_started", worker=worker, http=f"{settings.http.host}:{settings.http.port}")

    await stop.wait()
    log.info("worker_stopping", worker=worker)
    if server is not None:
        server.should_exit = True
    for d in dispatchers:
        d.stop()
    housekeeper.stop()
    webhooks.stop()
    mo.stop()
    # Dispatchers finish the sends they started; unacknowledged lane entries
    # would be reclaimed by another worker anyway.
    await asyncio.wait(tasks, timeout=10)
    await asyncio.gather(*(c.stop() for c in connectors.values()), return_exceptions=True)
    await store.close()
    if health.fatal:
        log.error("worker_exiting", worker=worker, reason="tasks failing repeatedly",
                  exit_code=EXIT_TASKS_FAILING)
        raise SystemExit(EXIT_TASKS_FAILING)


async def _publish_metrics(store: Store, worker: int, stop: asyncio.Event) -> None:
    """Put this worker's metrics where a /metrics answered by a sibling finds them."""
    while not stop.is_set():
        try:
            await store.publish_metrics(metrics.HOST, worker, metrics.snapshot())
        except Exception:
            pass  # Redis away for a moment: the next round publishes
        try:
            await asyncio.wait_for(stop.wait(), metrics.PUBLISH_EVERY)
        except TimeoutError:
            pass


async def _report(store: Store, worker: str, connectors: dict[str, Connector],
                  stop: asyncio.Event, health: TaskHealth) -> None:
    """Publish this worker's view of its connectors for `smsgw status`."""
    while not stop.is_set():
        for name, connector in connectors.items():
            s = connector.settings
            report = {
                "kind": s.kind,
                "up": connector.down_for() == 0,
                "down_for_s": round(connector.down_for(), 1),
                "binds_bound": connector.binds_bound(),
                "window": s.window,
                "tps_limit": s.tps or None,
                "dispatcher": "running" if health.running.get(f"dispatcher:{name}")
                else "down",
                "dispatcher_failures": health.failures.get(f"dispatcher:{name}", 0),
            }
            try:
                await store.report_connector(worker, name, report)
            except Exception:
                pass  # Redis away for a moment: the next round reports
        try:
            await asyncio.wait_for(stop.wait(), 2)
        except TimeoutError:
            pass
