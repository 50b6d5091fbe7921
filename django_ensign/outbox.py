"""The explicit outbox API: write an event row in the caller's transaction.

``post_save``/``post_delete`` signals cover models registered with
:mod:`django_ensign.registry` (a published model's ``QuerySet.delete()`` too: Django
sends ``post_delete`` per row when a receiver listens); ``bulk_create`` and
``QuerySet.update`` send no signals, so code on those paths calls :func:`publish`
(or :func:`publish_many`) itself, inside the same ``transaction.atomic`` block.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.files import File
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import setting_changed
from django.db import connections, router, transaction
from django.utils.connection import ConnectionDoesNotExist

from django_ensign import columns, databases, exceptions, models, rowwrite
from django_ensign.client import events
from django_ensign.conf import settings
from django_ensign.wire import ids, mimetypes, topicnames

if TYPE_CHECKING:
    from django_ensign.heldrows import HeldRows


def validate_topic(topic: str) -> str:
    """Return ``topic`` if Ensign accepts it as a name, else raise :class:`InvalidTopicName`."""
    if not isinstance(topic, str) or not topicnames.NAME.fullmatch(topic):
        raise exceptions.InvalidTopicName(
            f"invalid topic name {topic!r}: a letter, then letters, digits, '.', '-' or '_'"
        )
    if len(topic.encode()) > topicnames.MAX_BYTES:
        raise exceptions.InvalidTopicName(
            f"topic name {topic[:40]!r}… is longer than {topicnames.MAX_BYTES} bytes"
        )
    return topic


@dataclass
class Message:
    """One event to write to the outbox; :func:`publish_many` takes a list of them."""

    topic: str
    data: Any
    mimetype: str | None = None
    type_name: str = ""
    type_version: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)
    key: str | None = None


class PayloadEncoder(DjangoJSONEncoder):
    """Django's JSON encoder, plus files (their name) and bytes (base64 text)."""

    def default(self, o: Any) -> Any:
        if isinstance(o, File):
            return o.name or None
        if isinstance(o, bytes | bytearray | memoryview):
            return base64.b64encode(o).decode("ascii")
        return super().default(o)


#: One encoder for every payload (``json.dumps(cls=...)`` would build one per call).
_JSON = PayloadEncoder(separators=(",", ":"), allow_nan=False)


def _json(data: Any) -> str:
    try:
        return _JSON.encode(data)
    except ValueError as err:
        if not str(err).startswith("Out of range float"):
            raise
    # JSON has no NaN or Infinity (Python would write them anyway, and strict parsers
    # refuse the result): they go as strings, as protobuf's JSON mapping and a Decimal do.
    return _JSON.encode(_finite(data))


def _finite(value: Any) -> Any:
    """``value`` with each NaN or infinite float, however nested (keys too), as its string."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {
            (_finite(key) if isinstance(key, float) else key): _finite(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def encode(data: Any, mimetype: str | None) -> tuple[bytes, str]:
    """Bytes and mimetype for ``data``: bytes as given, text as UTF-8, anything else as JSON."""
    if isinstance(data, bytes):
        return data, mimetype or "application/octet-stream"
    if isinstance(data, bytearray | memoryview):
        return bytes(data), mimetype or "application/octet-stream"
    if isinstance(data, str):
        return data.encode(), mimetype or "text/plain"
    return _json(data).encode(), mimetype or "application/json"


def _non_empty(data: bytes) -> bytes:
    if not data:
        raise exceptions.InvalidEvent("event data is empty; Ensign refuses empty events")
    return data


def _from_sdk_event(event: Any) -> Message:
    """Read an SDK ``Event`` duck-typed, so this module does not import the SDK."""
    mimetype = getattr(event, "mimetype", None)
    if isinstance(mimetype, int):
        mimetype = mimetypes.name(mimetype)
    return Message(
        topic="",
        data=bytes(event.data),
        mimetype=str(mimetype) if mimetype else None,
        type_name=str(getattr(event, "type_name", None) or getattr(event, "schema_name", "") or ""),
        type_version=str(
            getattr(event, "type_version", None) or getattr(event, "schema_version", "") or ""
        ),
        meta=dict(getattr(event, "meta", None) or {}),
    )


def _is_sdk_event(value: Any) -> bool:
    return type(value).__name__ == "Event" and hasattr(value, "data") and hasattr(value, "meta")


#: Aliases already found fit for outbox rows; forgotten when the database settings change.
_checked_aliases: set[str] = set()


def _forget_checked_aliases(*, setting: str, **kwargs: Any) -> None:
    if setting in {"DATABASES", "DATABASE_ROUTERS"}:
        _checked_aliases.clear()


setting_changed.connect(_forget_checked_aliases, dispatch_uid="django_ensign.outbox.aliases")


def check_alias(using: str) -> str:
    """Refuse aliases that are not configured, not PostgreSQL or SQLite, or that the outbox
    table does not live on."""
    if using in _checked_aliases:
        return using
    try:
        connections[using]
    except ConnectionDoesNotExist:
        raise exceptions.OutboxDatabaseError(
            f"database alias {using!r} is not configured", using=using
        ) from None
    databases.require_supported(using)  # first: routing the table there would not help
    if not router.allow_migrate_model(using, models.OutboxEvent):
        raise exceptions.OutboxDatabaseError(
            f"the outbox table does not live on database {using!r} (your routers say so), so its "
            "row cannot join that transaction; route django_ensign.OutboxEvent to it",
            using=using,
        )
    _checked_aliases.add(using)
    return using


#: The ``ordering_key`` column's size (read once: every published save checks it).
_KEY_MAX = columns.limit(models.OutboxEvent, "ordering_key")


def validate_fits(**values: str | None) -> None:
    """Refuse a value longer than its outbox column (each keyword names one), which
    PostgreSQL would refuse only at the commit."""
    for column, value in values.items():
        size = columns.limit(models.OutboxEvent, column)
        if value and len(value) > size:
            raise exceptions.InvalidEvent(
                f"{column} {value[:40]!r}… is {len(value)} characters, longer than the {size} "
                "its outbox column holds"
            )


def validate_format(mimetype: str | None, version: str) -> None:
    """Refuse a mimetype or schema version that the relay would refuse for every event."""
    if mimetype is not None and not isinstance(mimetype, str):
        raise exceptions.InvalidEvent(f"mimetype must be a string, got {mimetype!r}")
    if mimetype:
        events.parse_mimetype(mimetype)
    if version:
        events.parse_version(version)


@dataclass(frozen=True)
class RowShape:
    """The validated columns that every row of one kind of event shares."""

    topic: str
    mimetype: str
    type_name: str
    type_version: str
    metadata_json: str

    @classmethod
    def validated(
        cls,
        topic: str,
        mimetype: str,
        type_name: str = "",
        type_version: str = "",
        meta: Mapping[str, str] | None = None,
    ) -> RowShape:
        """Check what the relay would otherwise refuse later, far from the caller's code."""
        validate_topic(topic)
        validate_format(mimetype, type_version)
        validate_fits(mimetype=mimetype, type_name=type_name, type_version=type_version)
        metadata = {str(k): str(v) for k, v in (meta or {}).items()}
        return cls(topic, mimetype, type_name, type_version, json.dumps(metadata))

    def row(self, data: bytes, key: str) -> rowwrite.NewRow:
        """A new row of this shape carrying ``data``, with a fresh stable id."""
        if len(key) > _KEY_MAX:
            # It keeps its head and a hash of the whole; the event's ordering-key
            # metadata carries that fitted key, not the original.
            key = columns.hashed(key, _KEY_MAX)
        return rowwrite.NewRow(
            ids.new_ulid_str(),
            self.topic,
            _non_empty(data),
            self.mimetype,
            self.type_name,
            self.type_version,
            self.metadata_json,
            key,
        )


def prepare(message: Message) -> rowwrite.NewRow:
    """Validate and encode ``message`` into the columns of a new row, with a fresh stable id."""
    validate_topic(message.topic)  # the likelier mistake, reported first
    data, mimetype = encode(message.data, message.mimetype)
    _non_empty(data)
    shape = RowShape.validated(
        message.topic, mimetype, message.type_name, message.type_version, message.meta
    )
    return shape.row(data, "" if message.key is None else str(message.key))


def publish(
    topic: str,
    data_or_event: Any,
    *,
    mimetype: str | None = None,
    type_name: str = "",
    type_version: str = "",
    meta: Mapping[str, str] | None = None,
    key: str | int | None = None,
    using: str | None = None,
) -> models.OutboxEvent:
    """Write one event for ``topic`` to the outbox on ``using``, in the current transaction.

    ``data_or_event`` is an SDK ``Event``, bytes, text, or anything JSON-serializable.
    Rows with the same ``key`` reach the server in the order they were written.
    Nothing is sent if the transaction rolls back.
    """
    if _is_sdk_event(data_or_event):
        message = _from_sdk_event(data_or_event)
        message.topic = topic
        message.mimetype = mimetype or message.mimetype
        message.type_name = type_name or message.type_name
        message.type_version = type_version or message.type_version
        message.meta = {**message.meta, **(meta or {})}
    else:
        message = Message(topic, data_or_event, mimetype, type_name, type_version, meta or {})
    message.key = None if key is None else str(key)
    return publish_many([message], using=using)[0]


def publish_many(
    messages: Iterable[Message], *, using: str | None = None
) -> list[models.OutboxEvent]:
    """Write many events in multi-row ``INSERT``s (the bulk path), in the current transaction."""
    alias = check_alias(using or models.outbox_alias())
    return _write([prepare(message) for message in messages], alias, want_rows=True)


def write(messages: Iterable[Message], *, using: str) -> None:
    """:func:`publish_many` for callers that need no model instances back."""
    write_rows([prepare(message) for message in messages], using=using)


def write_rows(rows: list[rowwrite.NewRow], *, using: str) -> None:
    """Write rows already prepared (the signals' :class:`RowShape` rows) on ``using``."""
    _write(rows, check_alias(using), want_rows=False)


def _write(rows: list[rowwrite.NewRow], alias: str, *, want_rows: bool) -> list[models.OutboxEvent]:
    if not rows:
        return []
    connection = connections[alias]
    if connection.vendor != "postgresql":
        with transaction.atomic(using=alias, savepoint=False):
            instances = _write_sqlite(rows, alias, want_rows=want_rows)
            _drain_on_commit(alias)
        return instances
    channel = settings.OUTBOX_NOTIFY_CHANNEL if settings.OUTBOX_NOTIFY else None
    # atomic() turns autocommit off; asking the connection costs more than this check.
    autocommit = False if connection.in_atomic_block else connection.get_autocommit()
    held: HeldRows | None = getattr(connection, "ensign_held_rows", None)
    if held is not None and not want_rows and not autocommit:
        held.hold(rows, channel)
        _drain_on_commit(alias)
        return []
    # Under autocommit one statement is its own transaction (rows and NOTIFY together);
    # inside the caller's transaction, atomic() adds no savepoint.
    if autocommit and len(rows) <= rowwrite.CHUNK:
        scope: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        scope = transaction.atomic(using=alias, savepoint=False)
    with scope:
        if want_rows:
            written = rowwrite.insert(rows, using=alias, channel=channel)
        else:
            rowwrite.insert_only(rows, using=alias, channel=channel)
        _drain_on_commit(alias)
    return [_saved(row, written[row.event_id], alias) for row in rows] if want_rows else []


def _write_sqlite(
    rows: list[rowwrite.NewRow], alias: str, *, want_rows: bool
) -> list[models.OutboxEvent]:
    if not want_rows:
        rowwrite.insert_only(rows, using=alias, channel=None)
        return []
    # The ORM, for the ids and defaults the caller gets back.
    instances = [models.OutboxEvent(**row.columns()) for row in rows]
    if len(instances) == 1:
        instances[0].save(using=alias, force_insert=True)
    else:
        models.OutboxEvent.objects.using(alias).bulk_create(instances)
    return instances


def _saved(row: rowwrite.NewRow, written: rowwrite.Written, alias: str) -> models.OutboxEvent:
    instance = models.OutboxEvent(**row.columns(), **written._asdict())
    instance._state.adding = False
    instance._state.db = alias
    return instance


class _Wake:
    """Run on commit, queues the optional Celery drain (once per transaction)."""

    def __init__(self, using: str) -> None:
        self.using = using

    def __call__(self) -> None:
        from django_ensign import tasks

        # A drain that has not started by then is stale: a later one (the next commit's
        # or beat's) takes the rows. Without it, a worker outage would pile up one drain
        # per commit, each connecting to the database only to skip.
        tasks.publish_outbox.apply_async(
            kwargs={"using": self.using}, expires=tasks.TRIGGERED_DRAIN_EXPIRES
        )


def _drain_on_commit(using: str) -> None:
    """With ``ENSIGN_OUTBOX_CELERY_ON_COMMIT``, queue one Celery drain per committed transaction."""
    if not settings.OUTBOX_CELERY_ON_COMMIT:
        return
    connection = connections[using]
    if not connection.in_atomic_block and not connection.get_autocommit():
        # Manual transactions (autocommit off, no atomic()): Django has no on-commit
        # hook for them. The relays' NOTIFY and the beat schedule still pick the rows up.
        return
    if any(isinstance(entry[1], _Wake) for entry in connection.run_on_commit):
        return  # rolled-back savepoints drop their callbacks
    transaction.on_commit(_Wake(using), using=using, robust=True)
