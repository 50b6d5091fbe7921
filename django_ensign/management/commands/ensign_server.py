"""``manage.py ensign_server``: run the embedded Ensign-compatible server."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_ensign.conf import settings
from django_ensign.management.base import EnsignCommand


class Command(EnsignCommand):
    help = "Run the embedded Ensign server (gRPC and its HTTP auth service) until stopped."
    # The server makes the credentials the client-side checks look for: do not require them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data-dir", default=None, help="ENSIGN_SERVER_DATA_DIR by default.")
        parser.add_argument("--host", default=None, help="ENSIGN_SERVER_HOST by default.")
        parser.add_argument("--port", type=int, default=None, help="gRPC port (5356).")
        parser.add_argument("--auth-port", type=int, default=None, help="Auth HTTP port (8088).")

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
                port or settings.SERVER_PORT,
                auth_port or settings.SERVER_AUTH_PORT,
                on_ready=self._ready,
            )
        except OSError as err:  # a port taken, a data directory it may not write
            raise CommandError(f"the Ensign server could not start: {err}") from err

    def _ready(self, where: str) -> None:
        # Said here, not only logged: a new project has no LOGGING for django_ensign.
        self.stdout.write(f"{where}; Ctrl-C to stop", ending="\n")
        self.stdout.flush()
