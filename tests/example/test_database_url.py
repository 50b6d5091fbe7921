"""``example_project.database_url``: DATABASE_URL picks the example's database."""

from __future__ import annotations

import pytest

from example_project.database_url import parse


def test_postgres_url_gives_every_connection_field() -> None:
    assert parse("postgres://demo:s%40cret@db.internal:6543/ensign_demo?sslmode=require") == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "ensign_demo",
        "USER": "demo",
        "PASSWORD": "s@cret",
        "HOST": "db.internal",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require"},
    }


def test_postgres_url_without_password_or_port_leaves_them_to_libpq() -> None:
    config = parse("postgresql://postgres@127.0.0.1/ensign_demo")
    assert (config["USER"], config["PASSWORD"], config["PORT"]) == ("postgres", "", "")
    assert "OPTIONS" not in config


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("sqlite:////var/data/demo.sqlite3", "/var/data/demo.sqlite3"),
        ("sqlite:///demo.db", "demo.db"),
    ],
)
def test_sqlite_url_names_the_file(url: str, name: str) -> None:
    assert parse(url) == {"ENGINE": "django.db.backends.sqlite3", "NAME": name}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/demo", "not supported"),
        ("postgres://postgres@127.0.0.1:5432/", "names no database"),
    ],
)
def test_unusable_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(url)
