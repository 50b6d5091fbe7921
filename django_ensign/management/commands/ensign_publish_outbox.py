"""``manage.py ensign_publish_outbox``: run the outbox relay."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_ensign import databases, exceptions, locks, relay
from django_ensign.conf import settings
from django_ensign.management.base import EnsignCommand, positive_int
from django_ensign.models import outbox_alias

logger = logging.getLogger(__name__)


class Command(EnsignCommand):
    help = "Publish outbox rows to Ensign until stopped (SIGTERM finishes in-flight events)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Publish what is due now, wait for the acks, exit (non-zero if Ensign could not "
            "be reached or refused the relay); rows written meanwhile are left to the next run.",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help="Rows per claim (ENSIGN_OUTBOX_BATCH_SIZE).",
        )
        parser.add_argument(
            "--max-in-flight",
            type=positive_int,
            default=None,
            help="Events published and not yet acked (ENSIGN_OUTBOX_MAX_IN_FLIGHT).",
        )
        parser.add_argument(
            "--topic",
            action="append",
            dest="topics",
            default=[],
            help="Only publish rows of this topic; repeat for several.",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="The database alias of the outbox table (default: where the router writes "
            "outbox rows).",
        )

    def handle(
        self,
        *args: Any,
        once: bool,
        batch_size: int | None,
        max_in_flight: int | None,
        topics: list[str],
        database: str | None,
        **options: Any,
    ) -> None:
        database = database or outbox_alias()
        try:  # before the lock and the greeting: neither helps a database it cannot use
            databases.require_supported(database)
        except exceptions.UnsupportedDatabase as err:
            raise CommandError(str(err)) from err
        opts = relay.RelayOptions(
            batch_size=batch_size or settings.OUTBOX_BATCH_SIZE,
            max_in_flight=max_in_flight or settings.OUTBOX_MAX_IN_FLIGHT,
            topics=tuple(topics),
            once=once,
            using=database,
        )
        try:
            stats = self._run(opts, database)
        except exceptions.RelayStopped as err:
            if isinstance(err.stats, relay.RelayStats):
                self._report(err.stats)
            raise CommandError(str(err)) from err
        self._report(stats)

    def _run(self, opts: relay.RelayOptions, database: str) -> relay.RelayStats:
        if opts.once:
            return relay.run(opts)
        # Held shared: Celery drains skip while relays run; a relay waits only for a
        # drain already running, and not for long. A relay of some topics takes none, so
        # drains go on publishing the rest.
        lock = contextlib.nullcontext(True) if opts.topics else locks.relay_lock(database)
        with lock as taken:
            if not taken:
                logger.warning("a drain still holds the outbox drain lock; relaying without it")
            # Said here, not only logged: a new project has no LOGGING for django_ensign.
            self.stdout.write(
                f"Publishing the outbox of database {database!r} to Ensign at "
                f"{settings.ENDPOINT}; Ctrl-C or SIGTERM to stop"
            )
            self.stdout.flush()
            return relay.run(opts)

    def _report(self, stats: relay.RelayStats) -> None:
        self.stdout.write(
            f"claimed {stats.claimed}, acked {stats.acked}, retrying {stats.retrying}, "
            f"dead {stats.dead}, released {stats.released}"
        )
