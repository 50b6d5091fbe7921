"""``bench_relay``: drain the outbox once with a relay whose client has batch framing off."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_ensign import relay
from django_ensign.client import Ensign
from django_ensign.conf import settings


class Command(BaseCommand):
    help = "Run one --once relay drain with plain Ensign framing (the client's batch=False)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-in-flight", type=int, default=None, help="Client window.")

    def handle(self, *args: Any, max_in_flight: int | None, **options: Any) -> None:
        window = max_in_flight or settings.OUTBOX_MAX_IN_FLIGHT

        async def main() -> relay.RelayStats:
            client = Ensign(
                client_id=settings.CLIENT_ID or "",
                client_secret=settings.CLIENT_SECRET or "",
                endpoint=settings.ENDPOINT,
                insecure=settings.INSECURE,
                auth_url=settings.AUTH_URL,
                max_in_flight=window,
                batch=False,
            )
            try:
                options_ = relay.RelayOptions(once=True, max_in_flight=window)
                return await relay.Relay(options_, client=client).run()
            finally:
                await client.close()

        stats = asyncio.run(main())
        self.stdout.write(json.dumps({"acked": stats.acked, "claimed": stats.claimed}))
