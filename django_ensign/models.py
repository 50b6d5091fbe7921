"""django-ensign's tables: the outbox (events to publish) and the inbox (events handled)."""

from __future__ import annotations

from django.db import models, router
from django.db.models.functions import Now
from django.utils import timezone


# === outbox models (owned by the outbox work) ===============================
class OutboxStatus(models.TextChoices):
    """Where an outbox row is on its way to the server."""

    PENDING = "pending", "pending"
    IN_FLIGHT = "in_flight", "in flight"
    ACKED = "acked", "acked"
    RETRYING = "retrying", "nacked, retrying"
    DEAD = "dead", "dead"


#: Statuses of rows not yet finished; one of them holds back later rows of its ordering key.
OUTBOX_UNFINISHED = (OutboxStatus.PENDING, OutboxStatus.IN_FLIGHT, OutboxStatus.RETRYING)
#: Statuses the claim picks up once ``next_attempt_at`` has passed.
OUTBOX_WAITING = (OutboxStatus.PENDING, OutboxStatus.RETRYING)


class OutboxEvent(models.Model):
    """One event to publish, written in the same transaction as the change it describes."""

    # Not unique and not indexed (see Meta). A ULID has 80 random bits per millisecond;
    # an index would take a new entry at every status change of every row.
    event_id = models.CharField(
        max_length=26,
        help_text="Stable ULID sent as metadata; consumers deduplicate on it.",
    )
    topic = models.CharField(max_length=512)
    data = models.BinaryField()
    mimetype = models.CharField(max_length=100, default="application/json")
    type_name = models.CharField(max_length=255, blank=True, default="")
    type_version = models.CharField(max_length=32, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    ordering_key = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="Rows sharing a key are published in order.",
    )
    # Database clock, like every time the relay compares: app servers' clocks may drift.
    created = models.DateTimeField(db_default=Now())
    status = models.CharField(
        max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    acked_at = models.DateTimeField(
        null=True, blank=True, help_text="The server's committed time from its Ack."
    )
    nack_code = models.SmallIntegerField(null=True, blank=True)
    nack_error = models.TextField(blank=True, default="")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "outbox event"
        indexes = [
            # The claim of waiting rows walks this in id order (its WHERE repeats the
            # predicate), so acked rows left in the table never slow a claim down.
            models.Index(
                fields=["id"],
                name="ensign_outbox_waiting",
                condition=models.Q(status__in=["pending", "retrying"]),
            ),
            # Reclaiming expired leases.
            models.Index(
                fields=["lease_expires_at"],
                name="ensign_outbox_leased",
                condition=models.Q(status="in_flight"),
            ),
            # "Is an earlier row of this key unfinished?"
            models.Index(
                fields=["ordering_key", "id"],
                name="ensign_outbox_key_open",
                condition=models.Q(status__in=["pending", "in_flight", "retrying"]),
            ),
            # Pruning and counting acked rows; partial, so claims never write to it.
            models.Index(
                fields=["acked_at"],
                name="ensign_outbox_acked",
                condition=models.Q(status="acked"),
            ),
            models.Index(
                fields=["id"], name="ensign_outbox_dead", condition=models.Q(status="dead")
            ),
        ]
        # Every row changes status twice (claimed, then acked): each index whose predicate
        # the new version meets takes an entry each time, so the set above is kept small.
        # A unique index on event_id (migration 0004 dropped it) cost the relay's claim
        # and ack statements about a quarter of their time.

    def __str__(self) -> str:
        return f"{self.topic} {self.type_name or 'event'} {self.event_id} ({self.status})"


def outbox_alias() -> str:
    """The database alias the routers write outbox rows to: every outbox entry point's default."""
    return str(router.db_for_write(OutboxEvent))


# === end outbox models ======================================================


# === inbox models (owned by the subscriber work) ============================
class InboxEvent(models.Model):
    """One event that one handler applied; written in the same transaction as the handler's work."""

    handler = models.CharField(max_length=255, help_text="The handler's registered name.")
    event_id = models.CharField(
        max_length=64, help_text="The outbox's stable id when present, else the server's event id."
    )
    topic = models.CharField(max_length=512)
    type_name = models.CharField(max_length=255, blank=True, default="")
    server_id = models.CharField(max_length=32, blank=True, default="")
    committed_at = models.DateTimeField(null=True, blank=True)
    handled_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "inbox event"
        constraints = [
            models.UniqueConstraint(fields=["handler", "event_id"], name="ensign_inbox_once"),
        ]
        indexes = [
            models.Index(fields=["topic", "handled_at"], name="ensign_inbox_topic"),
            models.Index(fields=["handled_at"], name="ensign_inbox_handled"),
        ]

    def __str__(self) -> str:
        return f"{self.handler} handled {self.topic} {self.event_id}"


class DeadLetterReason(models.TextChoices):
    """Why an event was dead-lettered."""

    FAILED = "failed", "handler kept failing"
    UNDECODABLE = "undecodable", "data could not be decoded"
    UNKNOWN_TYPE = "unknown_type", "no handler for its type"


class DeadLetterStatus(models.TextChoices):
    """Whether a dead letter still waits for a replay."""

    DEAD = "dead", "dead"
    REPLAYED = "replayed", "replayed"


class DeadLetter(models.Model):
    """An event a handler could not apply, kept whole so it can be replayed."""

    handler = models.CharField(
        max_length=255, blank=True, default="", help_text="Blank when no handler wanted the event."
    )
    event_id = models.CharField(max_length=64)
    topic = models.CharField(max_length=512)
    data = models.BinaryField()
    mimetype = models.CharField(max_length=100, blank=True, default="")
    type_name = models.CharField(max_length=255, blank=True, default="")
    type_version = models.CharField(max_length=32, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    server_id = models.CharField(max_length=32, blank=True, default="")
    committed_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=16, choices=DeadLetterReason.choices)
    status = models.CharField(
        max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.DEAD
    )
    error = models.TextField(blank=True, default="", help_text="The last error, one line.")
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(default=timezone.now)
    last_failed_at = models.DateTimeField(default=timezone.now)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "dead letter"
        constraints = [
            models.UniqueConstraint(fields=["handler", "event_id"], name="ensign_dead_once"),
        ]
        indexes = [
            models.Index(fields=["status", "created"], name="ensign_dead_status"),
            models.Index(fields=["topic"], name="ensign_dead_topic"),
        ]

    def __str__(self) -> str:
        return f"{self.handler or 'no handler'}: {self.topic} {self.event_id} ({self.reason})"


# === end inbox models =======================================================
