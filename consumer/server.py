"""The supervisor's HTTP endpoints: /metrics (every child's metrics in one page), /healthz and /readyz.

/healthz is for liveness probes: it fails while the engine is gone or has stopped answering, or while a child has
held one batch longer than `http.stuck_batch_seconds` (a restart is then the cure). /readyz is for readiness
and start-up checks: it passes once the configuration is loaded and the KCL scheduler has started, and fails again
when a shutdown begins.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


@dataclass
class HealthState:
    """Written by the supervisor's loop, read by the request threads (whole-value assignments only)."""

    engine: str = "starting"  # starting, running, unresponsive, stopped
    scheduler: str = "CREATED"  # the KCL worker state the engine last reported
    ready: bool = False
    stuck: list[dict[str, Any]] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.engine in {"starting", "running"} and not self.stuck


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        elif path == "/healthz":
            state = self.server.state
            body = {"status": "ok" if state.healthy else "unhealthy", "engine": state.engine, "stuck": state.stuck}
            self._json(200 if state.healthy else 503, body)
        elif path == "/readyz":
            state = self.server.state
            body = {"status": "ready" if state.ready else "not ready", "scheduler": state.scheduler}
            self._json(200 if state.ready else 503, body)
        else:
            self._json(404, {"status": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(body).encode("utf-8"))

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        return None  # probes every few seconds would drown the log


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, registry: CollectorRegistry, state: HealthState) -> None:
        super().__init__((host, port), _Handler)
        self.registry = registry
        self.state = state
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
