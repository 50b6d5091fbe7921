"""An unmodified official Ensign client (pyensign 0.12) works against the embedded server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.server import EmbeddedServer

SCRIPT = Path(__file__).with_name("official_client_script.py")

pytestmark = [pytest.mark.pyensign, pytest.mark.slow]


@pytest.fixture(scope="module")
def pyensign_python() -> Path:
    from bench import official_sdk

    try:
        return official_sdk.python()
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"could not install the official SDK (pyensign) in its own venv: {err}")


def test_official_client_authenticates_publishes_subscribes_and_queries(
    pyensign_python: Path, ensign_server: EmbeddedServer
) -> None:
    count = 25
    done = subprocess.run(
        [str(pyensign_python), str(SCRIPT), "official-compat", str(count)],
        env={**os.environ, **ensign_server.client_env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["exists"] is True
    assert "HEALTHY" in seen["status"] or "1" in seen["status"]
    assert seen["acked"] == count
    assert seen["committed_positive"] is True
    assert seen["nacks"] == []
    assert seen["subscribed"] == list(range(count))
    assert seen["queried"] == list(range(count))
