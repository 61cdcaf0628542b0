"""One gateway worker process: HTTP API, dispatchers and connectors on one
event loop. Workers keep no state of their own (it all lives in Redis), so any
number of them can run and any one can die."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from typing import Any

import uvicorn

from gateway import logs, metrics, numbers
from gateway.api import create_app
from gateway.config import Settings
from gateway.connectors import make_connector
from gateway.dispatcher import Dispatcher, Housekeeper
from gateway.httpserver import protocol_class
from gateway.problems import problem_response
from gateway.provider_receipts import ReceiptProblem, receipts_router
from gateway.receipts import Receipts
from gateway.store import Store
from gateway.webhooks import Webhooks

log = logs.get("smsgw.server")


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
    app.include_router(receipts_router(settings, receipts))

    async def _problem(_request: Any, exc: ReceiptProblem) -> Any:
        return problem_response(exc.status, exc.code, exc.detail)

    app.add_exception_handler(ReceiptProblem, _problem)


async def serve(settings: Settings, redis_url: str, worker: int = 0) -> None:
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
    store = Store.from_url(redis_url, settings.messages.receipt_grace)
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    webhooks = Webhooks(settings, store, consumer)
    receipts = Receipts(store, settings, on_mo=webhooks.on_mo)
    connectors = {}
    dispatchers: list[Dispatcher] = []
    housekeeper = Housekeeper(store, consumer=consumer,
                              claim_idle_ms=settings.dispatch.claim_idle_ms,
                              retention=settings.messages.retention)
    for name, conn in settings.connectors.items():
        connector = make_connector(name, conn, receipts.on_deliver)
        connectors[name] = connector
        dispatchers.append(Dispatcher(name, settings, store, connector, receipts, consumer))

    tasks: list[asyncio.Task[None]] = []
    server: uvicorn.Server | None = None
    if settings.http.enabled:
        app = create_app(settings, store, worker)
        add_provider_receipts(app, settings, receipts)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http=protocol_class(settings.http),
            timeout_keep_alive=settings.http.keepalive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        sock = http_socket(settings.http.host, settings.http.port)
        tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
    for connector in connectors.values():
        connector.start()
    tasks += [asyncio.create_task(d.run()) for d in dispatchers]
    tasks.append(asyncio.create_task(housekeeper.run()))
    tasks.append(asyncio.create_task(_report(store, consumer, connectors, stop)))
    tasks.append(asyncio.create_task(_publish_metrics(store, worker, stop)))
    if settings.webhooks.enabled:
        tasks.append(asyncio.create_task(webhooks.run()))
    log.info("worker_started", worker=worker, http=f"{settings.http.host}:{settings.http.port}")

    await stop.wait()
    log.info("worker_stopping", worker=worker)
    if server is not None:
        server.should_exit = True
    for d in dispatchers:
        d.stop()
    housekeeper.stop()
    webhooks.stop()
    # Dispatchers finish the sends they started; unacknowledged lane entries
    # would be reclaimed by another worker anyway.
    await asyncio.wait(tasks, timeout=10)
    await asyncio.gather(*(c.stop() for c in connectors.values()), return_exceptions=True)
    await store.close()


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


async def _report(store: Store, worker: str, connectors: dict, stop: asyncio.Event) -> None:  # type: ignore[type-arg]
    """Publish this worker's view of its connectors for `smsgw status`."""
    while not stop.is_set():
        for name, connector in connectors.items():
            s = connector.settings
            report = {
                "kind": s.kind,
                "up": connector.down_for() == 0,
                "down_for_s": round(connector.down_for(), 1),
                "binds_bound": len(getattr(connector, "senders", ())),
                "window": getattr(s, "window", None),
                "tps_limit": s.tps or None,
            }
            try:
                await store.report_connector(worker, name, report)
            except Exception:
                pass  # Redis away for a moment: the next round reports
        try:
            await asyncio.wait_for(stop.wait(), 2)
        except TimeoutError:
            pass
