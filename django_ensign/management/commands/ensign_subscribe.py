"""``manage.py ensign_subscribe``: receive events and run their handlers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_ensign import exceptions, handlers, subscriber
from django_ensign.conf import settings
from django_ensign.management.base import EnsignCommand, positive_int


class Command(EnsignCommand):
    help = "Receive events of TOPIC(s) and run their handlers (SIGTERM finishes events in hand)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "topics",
            nargs="*",
            metavar="TOPIC",
            help="Topics to subscribe to (default: every topic a handler is registered for).",
        )
        parser.add_argument(
            "--group",
            default=None,
            help="Consumer group; a restart resumes after its last acked event "
            "(default: ENSIGN_SUBSCRIBER_GROUP, else the project's package name).",
        )
        parser.add_argument(
            "--no-group",
            action="store_true",
            help="Subscribe without a consumer group (nothing is resumed; see --from).",
        )
        parser.add_argument(
            "--from",
            dest="start",
            choices=["earliest", "latest"],
            default="earliest",
            help="Where to begin: the topic's first stored event (earliest) or only events "
            "committed after the subscription starts (latest). Applies to a new group (per "
            "topic) and to --no-group; a group that has a position on a topic (acked, set "
            "by an earlier --from latest, or held by the server since an earlier stream of "
            "the group) resumes after it and ignores --from.",
        )
        parser.add_argument(
            "--concurrency",
            type=positive_int,
            default=None,
            help="Events handled at once (ENSIGN_SUBSCRIBER_CONCURRENCY).",
        )
        parser.add_argument(
            "--celery",
            action="store_true",
            help="Hand each event to the django_ensign.tasks.handle_event Celery task.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="Events per delivery from a server with the batch extension; 0: plain "
            "Ensign framing (ENSIGN_SUBSCRIBER_BATCH_SIZE, else the SDK's default).",
        )

    def handle(
        self,
        *args: Any,
        topics: list[str],
        group: str | None,
        no_group: bool,
        start: str,
        concurrency: int | None,
        celery: bool,
        batch_size: int | None,
        verbosity: int,
        **options: Any,
    ) -> None:
        topics = topics or handlers.registry.topics()
        if not topics:
            raise CommandError("no topics given and no handler is registered (ensign_handlers.py)")
        orphans = [topic for topic in topics if not handlers.registry.for_topic(topic)]
        if orphans:
            raise CommandError(
                f"no handler is registered for {', '.join(orphans)}: its events would all be "
                "dead-lettered"
            )
        if group and no_group:
            raise CommandError("--group and --no-group exclude each other")
        if celery:
            try:
                from django_ensign import tasks  # noqa: F401
            except ImportError as exc:
                raise CommandError(f"--celery needs Celery installed: {exc}") from exc
        opts = subscriber.SubscriberOptions(
            topics=tuple(topics),
            group=None if no_group else (group or settings.SUBSCRIBER_GROUP),
            start="latest" if start == "latest" else "earliest",
            concurrency=concurrency or settings.SUBSCRIBER_CONCURRENCY,
            celery=celery,
            batch_size=settings.SUBSCRIBER_BATCH_SIZE if batch_size is None else batch_size,
        )

        def report(message: str, level: int) -> None:
            if verbosity >= level:
                self.stdout.write(message)
                self.stdout.flush()

        try:
            stats = subscriber.run(opts, report=report, verbosity=verbosity)
        except exceptions.EnsignError as exc:  # configuration, credentials, permissions
            raise CommandError(f"cannot subscribe: {exc}") from exc
        if verbosity >= 1:
            self.stdout.write(f"Stopped: {stats.summary()}")
