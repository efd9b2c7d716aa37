"""A minimal HTTP/1.1 keep-alive client for load generation.

General clients (httpx, requests) spend more CPU per request than the server under
test on this 2-core machine, so the benchmark would measure the client. This one
does only what a benchmark needs: GET or POST on a persistent connection, read the
status and a Content-Length body.
"""

from __future__ import annotations

import asyncio
import time


class Connection:
    """One persistent connection to the server."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Connect."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """Send one request and return (status, body)."""
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
        if body or method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length) if length else b""

    async def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()


async def run_requests(
    host: str, port: int, headers: dict[str, str], paths: list[str], concurrency: int
) -> tuple[float, list[float], int]:
    """GET every path over ``concurrency`` connections.

    Returns (elapsed seconds, per-request latencies in seconds, non-2xx count).
    """
    queue = list(reversed(paths))
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        conn = Connection(host, port, headers)
        await conn.open()
        while queue:
            path = queue.pop()
            t0 = time.perf_counter()
            status, _ = await conn.request("GET", path)
            latencies.append(time.perf_counter() - t0)
            if status >= 300:
                failures += 1
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, failures
