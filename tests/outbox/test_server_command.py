"""`manage.py ensign_server` runs the embedded server that relays and clients talk to."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings

from tests.outbox.support import ROOT, run_async, stop, wait_until
from tests.support.server import EmbeddedServer, free_port, port_open

pytestmark = pytest.mark.timeout(60)


def test_ensign_server_command_serves_until_sigterm(tmp_path: Path) -> None:
    port, auth_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "ensign_server", "--data-dir", str(tmp_path),
         "--port", str(port), "--auth-port", str(auth_port)],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT),
             "PATH": "/usr/bin:/bin", "ENSIGN_TEST_DB": "sqlite"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        server = EmbeddedServer(data_dir=tmp_path, port=port, auth_port=auth_port)
        wait_until(
            lambda: server.credentials_path.exists() and port_open(port) and port_open(auth_port),
            30,
            "the server to listen",
        )

        async def status() -> object:
            from tests.outbox.support import client_for

            client = client_for(server)
            try:
                return await client.status()
            finally:
                await client.close()

        assert run_async(status()) is not None
    finally:
        assert stop(process) == 0
    # Said on stdout, though the test settings configure no logging for django_ensign.
    assert process.stdout is not None
    assert f"on 127.0.0.1:{port} (auth :{auth_port})" in process.stdout.read().decode()


def test_ensign_server_command_on_a_taken_port_fails_with_a_short_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "django", "ensign_server", "--data-dir", str(tmp_path),
             "--port", str(port), "--auth-port", str(free_port())],
            cwd=ROOT,
            env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT),
                 "PATH": "/usr/bin:/bin", "ENSIGN_TEST_DB": "sqlite"},
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert (
        f"CommandError: the Ensign server could not start: could not listen on 127.0.0.1:{port}"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


@override_settings(ENSIGN_SERVER_PORT="x")
def test_ensign_server_command_with_a_bad_port_setting_fails_its_check() -> None:
    with pytest.raises(SystemCheckError, match=r"django_ensign.E015.*ENSIGN_SERVER_PORT"):
        call_command("ensign_server", skip_checks=False)


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_ensign_server_command_refuses_a_port_out_of_range(port: str) -> None:
    with pytest.raises(CommandError, match="a port number from 1 to 65535"):
        call_command("ensign_server", "--port", port)
