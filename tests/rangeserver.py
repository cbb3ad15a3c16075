"""``python -m http.server`` with byte ranges and ETags, as object stores and CDNs serve shards.

Python 3.11's SimpleHTTPRequestHandler ignores ``Range`` headers, and fsspec reads a URL from an
offset with a range request. Run as ``python rangeserver.py PORT DIRECTORY [LOG]``: every GET is
appended to LOG as ``path start end`` (for tests that count requests). :class:`HttpServer`
runs it in a subprocess for tests and the data bench.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class HttpServer:
    """A static HTTP server (byte ranges, ETags) over ``root``, logging every GET."""

    def __init__(self, root: Path, log: Path):
        self.root, self.log = root, log
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [sys.executable, __file__, str(self.port), str(root), str(log)]
        self.process = subprocess.Popen(command)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(self.url + "/", timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the HTTP server did not start")

    def requests(self, name: str) -> list[tuple[int, int]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [(int(a), int(b)) for p, a, b in map(str.split, lines) if p.endswith(name)]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class RangeHandler(SimpleHTTPRequestHandler):
    log_path: str | None = None

    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            return super().send_head()
        stat = os.stat(path)
        match = _RANGE.match(self.headers.get("Range", ""))
        start = int(match.group(1)) if match else 0
        end = min(int(match.group(2) or stat.st_size - 1), stat.st_size - 1) if match else None
        if match and start >= stat.st_size:
            self.send_error(416)
            return None
        stop = stat.st_size if end is None else end + 1
        self._log(start, stop)
        f = open(path, "rb")  # noqa: SIM115 - closed by the base class after copying
        f.seek(start)
        self.send_response(206 if match else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(stop - start))
        if match:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{stat.st_size}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"')
        self.end_headers()
        self.copyfile = functools.partial(_copy, length=stop - start)
        return f

    def _log(self, start: int, stop: int) -> None:
        if self.log_path and self.command == "GET":
            with open(self.log_path, "a") as log:
                log.write(f"{self.path} {start} {stop}\n")

    def log_message(self, *args) -> None:  # quiet
        pass


def _copy(source, destination, length: int) -> None:
    while length > 0:
        chunk = source.read(min(length, 1 << 20))
        if not chunk:
            break
        destination.write(chunk)
        length -= len(chunk)


if __name__ == "__main__":
    port, directory = int(sys.argv[1]), sys.argv[2]
    RangeHandler.log_path = sys.argv[3] if len(sys.argv) > 3 else None
    handler = functools.partial(RangeHandler, directory=directory)
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
