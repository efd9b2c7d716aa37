"""Start a CityPilot server in a child process for a benchmark, and stop it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(
    data_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 60.0
) -> Iterator[str]:
    """Run ``citypilot serve`` on a free port with ``data_dir``; yield its base URL."""
    with server_child(data_dir, extra_env, timeout) as (url, _proc):
        yield url


@contextlib.contextmanager
def server_child(
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60.0,
    command: Sequence[str] = ("serve",),
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Like ``server_process``, yielding the child process too (to kill it); ``command``
    is the ``citypilot`` command that serves (``("demo", "--scale", "1")`` for the demo
    city with its live simulator)."""
    port = free_port()
    env = {
        **os.environ,
        "CITYPILOT_DATA_DIR": str(data_dir),
        "CITYPILOT_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    # the server's log goes to a file, not a pipe: a chatty server never blocks on it
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "citypilot.cli", *command, "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited: {log.read().decode()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start in time")
                time.sleep(0.1)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
