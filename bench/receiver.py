"""The webhook receiver of the latency benchmark: answers 200 at once and notes when each message arrived.

Runs in its own process so that the writer's work never delays the moment of arrival. Prints "port N" once it
listens; appends "arrival written_at key eventID" per request to the output file, flushed line by line.

    python -m bench.receiver OUTPUT
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, ClassVar


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sink reuses its connection, as with a real endpoint
    out: ClassVar[IO[str]]
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        arrival = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        payload = json.loads(body)
        written = (payload.get("new") or {}).get("written_at")
        if written is not None:
            with self.lock:
                key = payload["keys"]["productId"]
                self.out.write(f"{arrival:.6f} {written} {key} {payload['eventID']}\n")
                self.out.flush()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        del format, args


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m bench.receiver OUTPUT\n")
        return 2
    with Path(args[0]).open("a", encoding="ascii") as out:
        Handler.out = out
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True

        def stop(signum: int, frame: FrameType | None) -> None:
            del signum, frame
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        sys.stdout.write(f"port {server.server_address[1]}\n")
        sys.stdout.flush()
        server.serve_forever(poll_interval=0.1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
