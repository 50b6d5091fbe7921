"""Run the example project's ``manage.py`` as a user would: subprocesses against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.server import EmbeddedServer, port_open

ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 90


def example_env(server: EmbeddedServer, database_url: str) -> dict[str, str]:
    """The environment of a process of the example project talking to ``server``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ENSIGN_", "DJANGO_", "DATABASE_URL"))
    }
    env.update(server.client_env())
    env.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DATABASE_URL=database_url,
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class ExampleProject:
    """The example project's ``manage.py`` with one server and one database."""

    env: dict[str, str]
    running: list[subprocess.Popen[str]] = field(default_factory=list)

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py *args`` to completion; fails the test on a non-zero exit."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if check and done.returncode != 0:
            pytest.fail(f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start ``manage.py *args`` in the background; stopped at the end of the test."""
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[str]) -> str:
        """SIGTERM ``process`` (a graceful stop) and return its output."""
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=COMMAND_TIMEOUT)
        self.running.remove(process)
        return output

    def close(self) -> None:
        for process in self.running:
            process.kill()
            process.communicate()
        self.running.clear()


def _postgres_database() -> Iterator[str]:
    if not port_open(5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    name = f"ensign_example_{uuid.uuid4().hex[:10]}"
    admin = "postgres://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database for the example project: SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'example.sqlite3'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def example(fresh_server: EmbeddedServer, database_url: str) -> Iterator[ExampleProject]:
    """The example project, migrated, on a server of its own (the topic is then the test's)."""
    project = ExampleProject(example_env(fresh_server, database_url))
    project.manage("migrate", "--noinput", "-v", "0")
    try:
        yield project
    finally:
        project.close()
