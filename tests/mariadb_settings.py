"""tests.settings on the machine's MariaDB through PyMySQL: a project django_ensign refuses."""

from __future__ import annotations

import pymysql

from tests.settings import *  # noqa: F403

# Django's MySQL backend imports MySQLdb (mysqlclient); PyMySQL stands in for it.
pymysql.install_as_MySQLdb()

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "test",
        "USER": "root",
        "HOST": "127.0.0.1",
        "PORT": "3306",
    }
}
