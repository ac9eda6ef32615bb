"""moto's server, noting when each DynamoDB Streams GetRecords began and ended (the latency benchmark's clock).

Run as `python -m bench.timed_moto -H 127.0.0.1 -p PORT` with BENCH_GET_RECORDS_LOG set: one line per call,
"started ended" in epoch seconds. With it, a record's write -> delivery time splits into the wait for the next
read, the endpoint's own time, and what follows the read (the KCL, the multilang hop, the child, the sink),
which is the part this service owns.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

LOG_ENV = "BENCH_GET_RECORDS_LOG"
TARGET = "DynamoDBStreams_20120810.GetRecords"


class TimedGetRecords:
    def __init__(self, app: Callable[..., Iterable[bytes]], log_path: str) -> None:
        self._app = app
        self._log = Path(log_path).open("a", encoding="ascii", buffering=1)  # noqa: SIM115 - for the process's life
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") != TARGET:
            return self._app(environ, start_response)
        started = time.time()
        body = b"".join(self._app(environ, start_response))  # the whole response, as the client receives it
        with self._lock:
            self._log.write(f"{started:.6f} {time.time():.6f}\n")
        return [body]


def main() -> None:
    host, port = sys.argv[sys.argv.index("-H") + 1], int(sys.argv[sys.argv.index("-p") + 1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        host,
        port,
        TimedGetRecords(app, os.environ[LOG_ENV]),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
