"""What a bot or worker process serves on METRICS_PORT: /metrics, and /healthz for this process.

The web process's /healthz (tracking.health) speaks for the database; a bot process has more to
say that only it knows: the gateway shards it runs (discordbot.shards reports them through
``watch_shards``) and whether it is in degraded mode. Its /healthz answers 200 when every shard
is connected and the database reachable, else 503 naming what is not.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer

_shards: Callable[[], dict] | None = None
_degraded = False  # this process's view of PostgreSQL (generation.health via metrics.set_degraded)


def watch_shards(snapshot: Callable[[], dict]) -> None:
    """``snapshot()`` -> {"count": n, "shards": {"0": {"state": …, "latency_s": …, "since": …}}}."""
    global _shards
    if _shards is None:
        REGISTRY.register(_ShardCollector())
    _shards = snapshot


def report_degraded(degraded: bool) -> None:
    global _degraded
    _degraded = degraded


def health() -> tuple[int, dict]:
    """This process's health: (HTTP status, body)."""
    problems = []
    body: dict = {"status": "ok", "database": "unreachable" if _degraded else "reachable"}
    if _degraded:
        problems.append("database unreachable (degraded mode: journal)")
    if _shards is not None:
        body["gateway"] = shards = _shards()
        down = [shard for shard, state in shards["shards"].items() if state["state"] != "connected"]
        if down:
            problems.append("shard(s) not connected: " + ", ".join(down))
    if problems:
        body.update(status="degraded", reason="; ".join(problems))
    return (503 if problems else 200), body


class _ShardCollector:
    def collect(self):
        connected = GaugeMetricFamily(
            "veobot_shard_connected", "1 while this gateway shard is connected to Discord.", labels=["shard"]
        )
        latency = GaugeMetricFamily(
            "veobot_shard_latency_seconds", "Heartbeat round trip of this gateway shard.", labels=["shard"]
        )
        for shard, state in (_shards()["shards"] if _shards else {}).items():
            connected.add_metric([shard], 1 if state["state"] == "connected" else 0)
            if state["latency_s"] is not None:
                latency.add_metric([shard], state["latency_s"])
        yield connected
        yield latency


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes and probes every few seconds: not worth a log line
        pass


def start_server(*, address: str, port: int) -> None:
    """Serve /healthz and (any other path) /metrics on a daemon thread."""
    metrics_app = make_wsgi_app()

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/healthz":
            return metrics_app(environ, start_response)
        status, body = health()
        start_response(
            f"{status} {'OK' if status == 200 else 'Service Unavailable'}", [("Content-Type", "application/json")]
        )
        return [json.dumps(body).encode()]

    class Server(ThreadingWSGIServer):
        address_family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    server = make_server(address, port, app, Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
