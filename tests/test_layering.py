"""The SDK, the server and the generated code never import Django."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "django_ensign.client",
        "django_ensign.client.sync",
        "django_ensign.server",
        "django_ensign.proto",
        "django_ensign.wire.ids",
    ],
)
def test_module_imports_without_django(module: str) -> None:
    code = f"import sys, {module}; assert 'django' not in sys.modules"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
