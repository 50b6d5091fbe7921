"""tests.settings with a MySQL/MariaDB default database (PyMySQL as the driver): a project
django_ensign refuses. Most refusals come before any connection; the published-save test
uses the machine's MariaDB and names its scratch database in ENSIGN_TEST_MARIADB_NAME."""

from __future__ import annotations

import os

import pymysql

from tests.settings import *  # noqa: F403

# Django's MySQL backend imports MySQLdb (mysqlclient); PyMySQL stands in for it.
pymysql.install_as_MySQLdb()

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        # No such database: a refusal that regressed would fail, not touch MariaDB's "test".
        "NAME": os.environ.get("ENSIGN_TEST_MARIADB_NAME", "ensign_refusal_unused"),
        "USER": "root",
        "HOST": "127.0.0.1",
        "PORT": "3306",
    }
}
