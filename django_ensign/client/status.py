"""What ``status()`` and ``info()`` return."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django_ensign.client.events import timestamp_to_datetime
from django_ensign.proto.api.v1beta1 import ensign_pb2, topic_pb2
from django_ensign.wire import ids, mimetypes


class ServiceStatus(enum.IntEnum):
    """The server's health (``ServiceState.Status``)."""

    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2
    DANGER = 3
    OFFLINE = 4
    MAINTENANCE = 5


@dataclass(frozen=True)
class ServerStatus:
    """The answer of the unauthenticated Status RPC."""

    status: ServiceStatus
    version: str
    uptime: timedelta
    not_before: datetime | None
    not_after: datetime | None

    @classmethod
    def from_proto(cls, msg: ensign_pb2.ServiceState) -> ServerStatus:
        """Build from a ``ServiceState``."""
        return cls(
            status=ServiceStatus(msg.status),
            version=msg.version,
            uptime=msg.uptime.ToTimedelta(),
            not_before=timestamp_to_datetime(msg.not_before)
            if msg.HasField("not_before")
            else None,
            not_after=timestamp_to_datetime(msg.not_after) if msg.HasField("not_after") else None,
        )


@dataclass(frozen=True)
class EventTypeCount:
    """Events of one (type, mimetype) in a topic."""

    type_name: str
    type_version: str
    mimetype: str
    events: int
    duplicates: int
    data_size_bytes: int


@dataclass(frozen=True)
class TopicStats:
    """Counts of one topic."""

    topic_id: str
    events: int
    duplicates: int
    data_size_bytes: int
    types: list[EventTypeCount] = field(default_factory=list)

    @classmethod
    def from_proto(cls, msg: topic_pb2.TopicInfo) -> TopicStats:
        """Build from a ``TopicInfo``."""
        return cls(
            topic_id=_ulid(msg.topic_id),
            events=msg.events,
            duplicates=msg.duplicates,
            data_size_bytes=msg.data_size_bytes,
            types=[
                EventTypeCount(
                    type_name=t.type.name,
                    type_version=(
                        f"{t.type.major_version}.{t.type.minor_version}.{t.type.patch_version}"
                    ),
                    mimetype=mimetypes.name(int(t.mimetype)),
                    events=t.events,
                    duplicates=t.duplicates,
                    data_size_bytes=t.data_size_bytes,
                )
                for t in msg.types
            ],
        )


@dataclass(frozen=True)
class ProjectInfo:
    """Counts of the project (or of the topics asked for)."""

    project_id: str
    num_topics: int
    num_readonly_topics: int
    events: int
    duplicates: int
    data_size_bytes: int
    topics: list[TopicStats]

    @classmethod
    def from_proto(cls, msg: ensign_pb2.ProjectInfo) -> ProjectInfo:
        """Build from a ``ProjectInfo``."""
        return cls(
            project_id=_ulid(msg.project_id),
            num_topics=msg.num_topics,
            num_readonly_topics=msg.num_readonly_topics,
            events=msg.events,
            duplicates=msg.duplicates,
            data_size_bytes=msg.data_size_bytes,
            topics=[TopicStats.from_proto(t) for t in msg.topics],
        )


def _ulid(raw: bytes) -> str:
    return ids.ulid_to_str(raw) if len(raw) == ids.ULID_BYTES else raw.hex()
