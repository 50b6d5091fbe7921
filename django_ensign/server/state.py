"""Everything the RPC handlers share: storage, topics, tokens, broker, consumer groups."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from django_ensign.server.broker import Broker
from django_ensign.server.guard import Guard
from django_ensign.server.rlids import RlidAllocator
from django_ensign.server.storage import Storage
from django_ensign.server.tokens import TokenIssuer
from django_ensign.server.topics import TopicRegistry

#: Largest serialized Event accepted in one EventWrapper (PROTOCOL.md §3).
MAX_EVENT_SIZE = 5_243_000
#: gRPC message limit: above the largest message a client sends (django_ensign.client's
#: is 64 MiB), so an event over MAX_EVENT_SIZE arrives and is nacked for it; a message
#: over this limit would instead end the publisher's stream, and every resend with it.
MAX_MESSAGE_BYTES = 65 * 1024 * 1024
#: Batch extension limits advertised in StreamReady.batch.
BATCH_MAX_EVENTS = 1000
BATCH_MAX_BYTES = 8 * 1024 * 1024


class Stoppable(Protocol):
    """A stream the server can ask to finish before it stops."""

    async def shutdown(self) -> None:
        """Finish what is in flight and end the call."""


@dataclass
class ServerState:
    """Shared server state; created once by the app and passed to every handler."""

    storage: Storage
    registry: TopicRegistry
    issuer: TokenIssuer
    broker: Broker
    server_id: str
    version: str
    guard: Guard = field(init=False)
    rlids: RlidAllocator = field(default_factory=RlidAllocator)
    started_ns: int = field(default_factory=time.time_ns)
    started_mono: float = field(default_factory=time.monotonic)
    #: Open streams, each able to end itself cleanly when the server shuts down.
    streams: set[Stoppable] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.guard = Guard(self.issuer)
