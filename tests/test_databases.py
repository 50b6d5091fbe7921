"""django_ensign refuses a database other than PostgreSQL or SQLite, clearly and up front.

Each test runs a command of a project whose database is MySQL/MariaDB (Django's MySQL
backend, PyMySQL as its driver) and checks that the refusal names the database. Before,
a relay on MariaDB failed every claim ("FOR UPDATE OF is not supported") and retried.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pymysql")

ROOT = Path(__file__).resolve().parent.parent
REFUSAL = (
    "database 'default' is mysql, and django_ensign's outbox and inbox run on PostgreSQL "
    "or SQLite only"
)

pytestmark = pytest.mark.timeout(120)


def run_django(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.mariadb_settings",
        "PYTHONPATH": str(ROOT),
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


def test_the_relay_refuses_instead_of_retrying_claims() -> None:
    result = run_django("ensign_publish_outbox", "--once", "--skip-checks")
    assert result.returncode == 1
    assert f"CommandError: {REFUSAL}" in result.stderr
    assert "claim failed" not in result.stderr


def test_the_subscriber_refuses_before_subscribing() -> None:
    result = run_django("ensign_subscribe", "sub-multi", "--skip-checks")
    assert result.returncode == 1
    assert f"CommandError: cannot subscribe: {REFUSAL}" in result.stderr
    assert "Subscribing to" not in result.stdout


def test_publish_refuses_to_write_the_row() -> None:
    code = (
        "from django_ensign import exceptions, outbox\n"
        "try:\n"
        "    outbox.publish('orders.events', b'{}')\n"
        "except exceptions.UnsupportedDatabase as err:\n"
        "    print('refused:', err, err.using)\n"
    )
    result = run_django("shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert f"refused: {REFUSAL} default" in result.stdout.splitlines()
