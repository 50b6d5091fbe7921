"""django_ensign refuses a database other than PostgreSQL or SQLite, clearly and up front.

Each test runs a command of a project whose database is MySQL/MariaDB (Django's MySQL
backend, PyMySQL as its driver) and checks that the refusal names the database. Before,
a relay on MariaDB failed every claim ("FOR UPDATE OF is not supported") and retried.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pymysql")

ROOT = Path(__file__).resolve().parent.parent
REFUSAL = (
    "database 'default' is MySQL or MariaDB, and django_ensign's outbox and inbox run on "
    "PostgreSQL or SQLite only"
)

pytestmark = pytest.mark.timeout(180)


def run_django(
    *args: str, database: str = "ensign_refusal_unused"
) -> subprocess.CompletedProcess[str]:
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
    assert "the handlers (their inbox)" in e014[0]
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


@pytest.mark.parametrize("mode", [[], ["--dry-run"]], ids=["replay", "dry-run"])
def test_replaying_dead_letters_refuses_before_reading_them(mode: list[str]) -> None:
    result = run_django("ensign_replay_dead", *mode, "--skip-checks")
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

    name = f"ensign_refusal_{uuid.uuid4().hex[:12]}"
    try:
        server = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"MariaDB is not reachable at 127.0.0.1:3306 as root without a password: {exc}")
    with server:
        try:
            server.cursor().execute(f"CREATE DATABASE `{name}`")
            # migrate's own system checks would stop at E014.
            migrated = run_django("migrate", "--run-syncdb", "--skip-checks", "-v0", database=name)
            assert migrated.returncode == 0, migrated.stderr
            yield name
        finally:
            server.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.mark.parametrize(
    ("setup", "change"),
    [
        ("", "Order.objects.create(reference='r2')"),
        # bulk_create sends no signal, so the row is there to delete.
        ("Order.objects.bulk_create([Order(reference='r2')])", "Order.objects.get().delete()"),
    ],
    ids=["save", "delete"],
)
def test_a_published_change_is_refused_and_rolled_back(
    mariadb: str, setup: str, change: str
) -> None:
    code = (
        "from django_ensign import exceptions\n"
        "from tests.testapp.models import Order\n"
        f"{setup}\n"
        "try:\n"
        f"    {change}\n"
        "except exceptions.UnsupportedDatabase as err:\n"
        "    print('refused:', err, err.using)\n"
        "print('orders:', list(Order.objects.values_list('reference', flat=True)))\n"
    )
    result = run_django("shell", "-c", code, database=mariadb)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"refused: {REFUSAL} default" in lines
    # Neither change is committed without its event: the order is as it was.
    assert ("orders: ['r2']" if setup else "orders: []") in lines
