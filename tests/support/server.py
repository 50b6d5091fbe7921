"""Run the embedded Ensign server as a real subprocess on loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Credentials:
    client_id: str
    client_secret: str

    @classmethod
    def load(cls, path: Path) -> Credentials:
        data = json.loads(path.read_text())
        return cls(client_id=data["ClientID"], client_secret=data["ClientSecret"])


@dataclass
class EmbeddedServer:
    """One embedded server process; ``kill()`` is kill -9, ``restart()`` reuses the data dir."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    auth_port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.auth_port}"

    @property
    def credentials_path(self) -> Path:
        return self.data_dir / "credentials.json"

    @property
    def credentials(self) -> Credentials:
        return Credentials.load(self.credentials_path)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def client_env(self) -> dict[str, str]:
        """Environment variables an Ensign client (ours or the official one) needs."""
        creds = self.credentials
        return {
            "ENSIGN_ENDPOINT": self.endpoint,
            "ENSIGN_AUTH_URL": self.auth_url,
            "ENSIGN_INSECURE": "true",
            "ENSIGN_CLIENT_ID": creds.client_id,
            "ENSIGN_CLIENT_SECRET": creds.client_secret,
        }

    def start(self, timeout: float = 20.0) -> EmbeddedServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django_ensign.server",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--auth-port",
                str(self.auth_port),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            if (
                self.credentials_path.exists()
                and port_open(self.port)
                and port_open(self.auth_port)
            ):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no chance to flush or close anything."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return int(self.process.returncode or 0)

    def restart(self) -> EmbeddedServer:
        self.kill()
        return self.start()


def create_apikey(server: EmbeddedServer | Path, permissions: str) -> dict[str, str]:
    """A new API key holding only ``permissions`` (comma-separated), by the server's CLI.

    ``server`` is a server or its data directory.
    """
    data_dir = server if isinstance(server, Path) else server.data_dir
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "django_ensign.server",
            "create-apikey",
            "--data-dir",
            str(data_dir),
            "--permissions",
            permissions,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    creds: dict[str, str] = json.loads(out.stdout)
    return creds
