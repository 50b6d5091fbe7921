"""An asyncio Ensign SDK on grpcio: publish, subscribe, query and manage topics.

Django-free. ``from django_ensign.client import Ensign, Event`` runs the official
PyEnsign examples; the blocking facade is :class:`django_ensign.client.sync.SyncEnsign`.
"""

from __future__ import annotations

from django_ensign.client.deadline import SendDeadline
from django_ensign.client.ensign import Ensign
from django_ensign.client.events import (
    Ack,
    Event,
    EventState,
    Nack,
    NackCode,
    Outcome,
    ReceivedEvent,
)
from django_ensign.client.exceptions import (
    ClientClosed,
    EnsignError,
    FlushTimeout,
    MissingCredentials,
    PublishTimeout,
    SendDeadlinePassed,
    UnknownTopic,
)
from django_ensign.client.query import QueryCursor
from django_ensign.client.status import ProjectInfo, ServerStatus, ServiceStatus
from django_ensign.client.subscriber import Subscription
from django_ensign.client.topics import DeduplicationStrategy, OffsetPosition, Topic, TopicState

__all__ = [
    "Ack",
    "ClientClosed",
    "DeduplicationStrategy",
    "Ensign",
    "EnsignError",
    "Event",
    "EventState",
    "FlushTimeout",
    "MissingCredentials",
    "Nack",
    "NackCode",
    "OffsetPosition",
    "Outcome",
    "ProjectInfo",
    "PublishTimeout",
    "QueryCursor",
    "ReceivedEvent",
    "SendDeadline",
    "SendDeadlinePassed",
    "ServerStatus",
    "ServiceStatus",
    "Subscription",
    "Topic",
    "TopicState",
    "UnknownTopic",
]
