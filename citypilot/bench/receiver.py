"""A local HTTP endpoint that keeps what is POSTed to it: the notification receiver of
``bench notify`` and of the subscription tests.

HTTP/1.1 with keep-alive on asyncio streams, in a thread of its own; each request is
kept with its arrival time and headers. It can answer the first N requests with an
error, to show retries. ``python -m citypilot.bench.receiver PORT`` runs one in a
process of its own (so a benchmark's client does not share its interpreter): there
``GET /_count?mark=<text>`` answers how many requests arrived and how often ``mark``
occurs in their bodies, and ``GET /_dump`` every request as ``[arrival, body]`` lines.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_ERROR = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Received:
    """One request as it arrived."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, parsed."""
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Listens on 127.0.0.1:``port`` (0: any free port) once started."""

    port: int = 0
    fail_first: int = 0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        """Start listening; returns itself."""
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Stop listening."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in self._handlers:
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[Received]:
        """The first ``n`` requests, once they have arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} of {n} requests arrived")
                self._cond.wait(left)
            return list(self.received[:n])

    def _control(self, path: str) -> bytes:
        """The answer to ``GET /_count`` or ``GET /_dump``."""
        parts = urlsplit(path)
        with self._cond:
            received = list(self.received)
        if parts.path == "/_count":
            mark = parse_qs(parts.query).get("mark", [""])[0].encode()
            found = sum(r.body.count(mark) for r in received) if mark else 0
            body = orjson.dumps({"requests": len(received), "marks": found})
        else:
            body = b"\n".join(orjson.dumps([r.at, r.body.decode()]) for r in received)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        return head + body

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if " " in lines[0] else "/"
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if lines[0].startswith("GET /_"):
                    writer.write(self._control(path))
                    await writer.drain()
                    continue
                with self._cond:
                    failing = self.fail_first > 0
                    if failing:
                        self.fail_first -= 1
                    else:
                        self.received.append(Received(time.time(), path, headers, body))
                        self._cond.notify_all()
                writer.write(_ERROR if failing else _OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the receiver stops
        finally:
            writer.close()


if __name__ == "__main__":
    Receiver(port=int(sys.argv[1])).start()
    threading.Event().wait()
