"""``manage.py ensign_replay_dead``: run dead-lettered events through their handlers again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_ensign import databases, dispatch, exceptions, models
from django_ensign.management.base import EnsignCommand


class Command(EnsignCommand):
    help = "Run dead-lettered events through their handlers again; replayed ones are marked so."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "ids", nargs="*", type=int, metavar="ID", help="Dead letters to replay (default: all)."
        )
        parser.add_argument("--topic", help="Only dead letters of this topic.")
        parser.add_argument("--handler", help="Only dead letters of this handler (its name).")
        parser.add_argument(
            "--reason",
            choices=[choice.value for choice in models.DeadLetterReason],
            help="Only dead letters dead for this reason.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be replayed; change nothing."
        )

    def handle(
        self,
        *args: Any,
        ids: list[int],
        topic: str | None,
        handler: str | None,
        reason: str | None,
        dry_run: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        try:  # before --dry-run reads the rows too
            databases.require_supported(dispatch.inbox_alias())
        except exceptions.UnsupportedDatabase as err:
            raise CommandError(str(err)) from err
        rows = models.DeadLetter.objects.filter(status=models.DeadLetterStatus.DEAD)
        if ids:
            rows = rows.filter(pk__in=ids)
        if topic:
            rows = rows.filter(topic=topic)
        if handler:
            rows = rows.filter(handler=handler)
        if reason:
            rows = rows.filter(reason=reason)
        if dry_run:
            for row in rows.order_by("pk"):
                self.stdout.write(f"{row.pk}: {row}")
            return
        replayed, failed = dispatch.replay_all(rows.order_by("pk"))
        for row in failed:
            if verbosity >= 1:
                self.stderr.write(f"{row.pk}: {dispatch.why_still_dead(row)}")
        self.stdout.write(f"Replayed {replayed}, still dead {len(failed)}")
