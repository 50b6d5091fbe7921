"""The committed migrations match the models."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_have_no_missing_migrations() -> None:
    out = StringIO()
    try:
        call_command(
            "makemigrations",
            "django_ensign",
            check=True,
            dry_run=True,
            stdout=out,
            skip_checks=True,
        )
    except SystemExit:
        pytest.fail(f"run makemigrations django_ensign:\n{out.getvalue()}")
