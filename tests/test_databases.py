"""django_ensign refuses a database other than PostgreSQL or SQLite, clearly and up front.

Each test runs a command of a project whose database is MySQL/MariaDB (Django's MySQL
backend, PyMySQL as its driver) and checks that the refusal names the database. Before,
a relay on MariaDB failed every claim ("FOR UPDATE OF is not supported") and retried.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pymysql")

ROOT = Path(__file__).resolve().parent.parent
REFUSAL = (
    "database 'default' is mysql, and django_ensign's outbox and inbox run on PostgreSQL "
    "or SQLite only"
)

pytestmark = pytest.mark.timeout(120)


def run_django(*args: str, database: str = "test") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.mariadb_settings",
        "PYTHONPATH": str(ROOT),
        "ENSIGN_TEST_MARIADB_NAME": database,
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_names_the_models_and_the_inbox_that_write_there() -> None:
    result = run_django("check")
    assert result.returncode == 1
    e014 = [line for line in result.stderr.splitlines() if "django_ensign.E014" in line]
    assert len(e014) == 1, result.stderr
    assert REFUSAL in e014[0]
    assert "testapp.Order" in e014[0]
    assert "testapp.Customer" in e014[0]
    assert "the handlers' inbox" in e014[0]
    assert "Route these models and django_ensign's tables" in result.stderr


@pytest.mark.parametrize("mode", [[], ["--once"]], ids=["loop", "once"])
def test_the_relay_refuses_instead_of_retrying_claims(mode: list[str]) -> None:
    result = run_django("ensign_publish_outbox", *mode, "--skip-checks")
    assert result.returncode == 1
    assert f"CommandError: {REFUSAL}" in result.stderr
    assert "claim failed" not in result.stderr
    assert "Publishing the outbox" not in result.stdout


def test_the_subscriber_refuses_before_subscribing() -> None:
    result = run_django("ensign_subscribe", "sub-multi", "--skip-checks")
    assert result.returncode == 1
    assert f"CommandError: cannot subscribe: {REFUSAL}" in result.stderr
    assert "Subscribing to" not in result.stdout


def test_replaying_dead_letters_refuses_before_reading_them() -> None:
    result = run_django("ensign_replay_dead", "--skip-checks")
    assert result.returncode == 1
    assert f"CommandError: {REFUSAL}" in result.stderr


@pytest.mark.parametrize(
    "call",
    [
        "outbox.publish('orders.events', b'{}')",
        "dispatch.handle_now(InboundEvent(topic='sub-multi', event_id='e1', data=b'1'))",
    ],
    ids=["publish", "handle-now"],
)
def test_writes_and_handling_refuse_before_touching_the_database(call: str) -> None:
    code = (
        "from django_ensign import dispatch, exceptions, outbox\n"
        "from django_ensign.handlers import InboundEvent\n"
        "from tests.testapp.models import Order\n"
        "try:\n"
        f"    {call}\n"
        "except exceptions.UnsupportedDatabase as err:\n"
        "    print('refused:', err, err.using)\n"
    )
    result = run_django("shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert f"refused: {REFUSAL} default" in result.stdout.splitlines()


@pytest.fixture
def mariadb() -> Iterator[str]:
    """A scratch database on the machine's MariaDB, migrated; yields its name."""
    import pymysql

    name = f"ensign_refusal_{os.getpid()}"
    try:
        server = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"MariaDB is not running at 127.0.0.1:3306: {exc}")
    with server:
        server.cursor().execute(f"CREATE DATABASE {name}")
        try:
            # migrate's own system checks would stop at E014.
            migrated = run_django("migrate", "--run-syncdb", "--skip-checks", "-v0", database=name)
            assert migrated.returncode == 0, migrated.stderr
            yield name
        finally:
            server.cursor().execute(f"DROP DATABASE {name}")


def test_a_published_save_is_refused_and_rolled_back(mariadb: str) -> None:
    code = (
        "from django_ensign import exceptions\n"
        "from tests.testapp.models import Order\n"
        "try:\n"
        "    Order.objects.create(reference='r1')\n"
        "except exceptions.UnsupportedDatabase as err:\n"
        "    print('refused:', err, err.using)\n"
        "print('orders:', Order.objects.count())\n"
    )
    result = run_django("shell", "-c", code, database=mariadb)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"refused: {REFUSAL} default" in lines
    assert "orders: 0" in lines  # not committed without its event
