"""Start and stop a local ``prefect server`` (and run Prefect CLI commands against it).

Tests and scripts use :class:`PrefectServer` to get a real API server on 127.0.0.1 with its own
``PREFECT_HOME`` and port: the same ``prefect server start`` command the README gives users.
The server and anything started through :meth:`PrefectServer.spawn` run in their own process
group, so stopping them also stops their children (the server's uvicorn process, a worker's flow
run); a stop sends SIGTERM, then SIGINT (Prefect workers ignore SIGTERM), then SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def prefect_executable() -> str:
    """The ``prefect`` command of this interpreter's environment (falls back to PATH)."""
    beside = Path(sys.executable).with_name("prefect")
    return str(beside) if beside.is_file() else (shutil.which("prefect") or "prefect")


def stop_process(process: subprocess.Popen, *, grace_s: float = 10.0) -> int | None:
    """Stop ``process`` and its process group: SIGTERM, SIGINT, then SIGKILL, ``grace_s`` apart."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(process.pid, signal.SIGKILL)  # children the leader left behind
    except (ProcessLookupError, PermissionError):
        pass
    return process.wait()


class PrefectServer:
    """A ``prefect server start`` on ``host:port`` with a private home, stopped on exit.

    ``env`` is the environment for the server and every command run against it
    (``PREFECT_API_URL`` pointing at it, analytics off, ``PREFECT_HOME`` = ``home``).
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        port: int | None = None,
        host: str = HOST,
        startup_timeout_s: float = 180.0,
    ) -> None:
        self.home = Path(home)
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self.url = f"http://{host}:{self.port}"
        self.api_url = f"{self.url}/api"
        self.log_path = self.home / "server.log"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.api_url,
        }
        self._process: subprocess.Popen | None = None

    def start(self) -> PrefectServer:
        """Start the server and wait until ``/api/health`` answers (raise with its log if not)."""
        self.home.mkdir(parents=True, exist_ok=True)
        server_env = {k: v for k, v in self.env.items() if k != "PREFECT_API_URL"}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [prefect_executable(), "server", "start", "--host", self.host, "--port", str(self.port)],
                env=server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.healthy():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"prefect server on {self.url} did not become healthy within "
                    f"{self.startup_timeout_s:.0f} s; log {self.log_path}:\n{self.log()[-4000:]}"
                )
            time.sleep(0.5)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def cli(
        self, *args: str, cwd: str | os.PathLike[str] | None = None, timeout_s: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``prefect <args>`` against this server; raise with its output when it fails."""
        result = subprocess.run(
            [prefect_executable(), *args],
            env=self.env,
            cwd=cwd,
            text=True,
            capture_output=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"`prefect {' '.join(args)}` failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def spawn(self, *args: str, log_path: Path, cwd: str | os.PathLike[str] | None = None) -> subprocess.Popen:
        """Start ``prefect <args>`` (e.g. a worker) in its own process group, output to ``log_path``."""
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [prefect_executable(), *args],
                env=self.env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
