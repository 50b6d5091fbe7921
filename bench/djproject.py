"""The benchmarks' scratch Django project: a fresh database, commands run as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import pg, procs
from tests.support.server import EmbeddedServer


@dataclass
class Project:
    """``bench.djsettings`` on ``db`` ("postgres" or "sqlite"), talking to ``server``."""

    db: str
    workdir: Path
    server: EmbeddedServer
    #: The PostgreSQL ENGINE, when not Django's own.
    pg_engine: str | None = None
    #: Ask that engine to prepare the outbox INSERT (``ENSIGN_PREPARED_INSERT``).
    pg_prepared: bool = False

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database file (when ``db`` is "sqlite")."""
        return self.workdir / "bench-outbox.sqlite3"

    def env(self) -> dict[str, str]:
        """Environment of every command: settings, database, server connection."""
        return {
            **os.environ,
            **self.server.client_env(),
            "PYTHONPATH": str(procs.ROOT),
            "DJANGO_SETTINGS_MODULE": "bench.djsettings",
            "BENCH_DB": self.db,
            "BENCH_PG_DB": pg.BENCH_DB,
            "BENCH_SQLITE_PATH": str(self.sqlite_path),
            **({"BENCH_PG_ENGINE": self.pg_engine} if self.pg_engine else {}),
            **({"BENCH_PG_PREPARED": "1"} if self.pg_prepared else {}),
        }

    def create(self) -> Project:
        """A fresh, migrated database."""
        if self.db == "postgres":
            pg.recreate_database(pg.BENCH_DB)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
        self.manage("migrate", "--run-syncdb", "--verbosity", "0")
        return self

    def drop(self) -> None:
        """Remove the database."""
        if self.db == "postgres":
            pg.drop_database(pg.BENCH_DB)

    def command(self, *args: str) -> list[str]:
        """The argv of ``python -m django ARGS``."""
        return [sys.executable, "-m", "django", *args]

    def manage(self, *args: str, timeout: float = 3600) -> str:
        """Run a management command to completion; its stdout."""
        done = subprocess.run(
            self.command(*args),
            cwd=procs.ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def manage_json(self, *args: str, timeout: float = 3600) -> Any:
        """Run a command that prints one JSON document as its last line."""
        return json.loads(self.manage(*args, timeout=timeout).strip().splitlines()[-1])

    def start(self, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start a management command in the background."""
        return self._start(self.command(*args), log)

    def start_module(
        self, module: str, *args: str, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m module args`` with this project's settings, in the background."""
        return self._start([sys.executable, "-m", module, *args], log)

    def _start(self, argv: list[str], log: Path | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            cwd=procs.ROOT,
            env=self.env(),
            stdout=subprocess.DEVNULL if log is None else log.open("ab"),
            stderr=subprocess.STDOUT,
        )
