"""``manage.py ensign_server``: run the embedded Ensign-compatible server."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_ensign.checks import SERVER_TAG
from django_ensign.conf import settings
from django_ensign.management.base import EnsignCommand


class Command(EnsignCommand):
    help = "Run the embedded Ensign server (gRPC and its HTTP auth service) until stopped."
    # The server makes the credentials the client-side checks look for: only its own run.
    requires_system_checks = [SERVER_TAG]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data-dir", default=None, help="ENSIGN_SERVER_DATA_DIR by default.")
        parser.add_argument("--host", default=None, help="ENSIGN_SERVER_HOST by default.")
        parser.add_argument("--port", type=_port, default=None, help="gRPC port (5356).")
        parser.add_argument("--auth-port", type=_port, default=None, help="Auth HTTP port (8088).")

    def handle(
        self,
        *args: Any,
        data_dir: str | None,
        host: str | None,
        port: int | None,
        auth_port: int | None,
        **options: Any,
    ) -> None:
        from django_ensign import server

        try:
            server.run(
                data_dir or settings.SERVER_DATA_DIR,
                host or settings.SERVER_HOST,
                settings.SERVER_PORT if port is None else port,
                settings.SERVER_AUTH_PORT if auth_port is None else auth_port,
                on_ready=self._ready,
            )
        except OSError as err:  # a port taken, a data directory it may not write
            raise CommandError(f"the Ensign server could not start: {err}") from err

    def _ready(self, where: str) -> None:
        # Said here, not only logged: a new project has no LOGGING for django_ensign.
        self.stdout.write(f"{where}; Ctrl-C to stop", ending="\n")
        self.stdout.flush()


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port number from 1 to 65535, got {text!r}")
    return port
