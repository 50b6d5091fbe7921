"""How long a relay may still send the events of each claim it holds.

A claim's events go out only while the relay is sure of the claim's lease, and no later than
the publish timeout: past either, another relay may hold the row (the lease lapsed) or the
row may have gone dead and the next event of its key gone out (the client gave the event up),
and an event sent then could land after its successor. The SDK enforces each window as a
:class:`~django_ensign.client.deadline.SendDeadline`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django_ensign.client.deadline import SendDeadline

#: The share of a lease's term in which the relay still sends its rows' events (counted
#: from the start of the claim or renewal that set it). The rest covers a frame's way to
#: the server.
SEND_SHARE_OF_LEASE = 0.8
#: The share of a lease's term that bytes the relay sent may stay unacknowledged by the
#: server's TCP before the connection drops them (the client's keepalive timeout, which
#: gRPC sets as TCP_USER_TIMEOUT on Linux): half the rest, so frames handed to the network
#: by the deadline arrive within the lease, or never.
UNACKED_SHARE_OF_LEASE = 0.1  # half of 1 - SEND_SHARE_OF_LEASE


def keepalive_timeout(lease_seconds: float) -> float:
    """The relay client's keepalive timeout for leases of ``lease_seconds``: not under a
    second (a lost packet takes that to resend), nor over gRPC's default of 20."""
    return min(20.0, max(1.0, lease_seconds * UNACKED_SHARE_OF_LEASE))


@dataclass
class _Window:
    #: Until when the lease is certain (clock of the deadline).
    lease_until: float
    #: Each publish call's deadline, and the latest it can be: the call's start plus the
    #: publish timeout (the client counts its events' own deadline from no earlier: from
    #: when it queues them).
    deadlines: list[tuple[SendDeadline, float]] = field(default_factory=list)


class SendWindows:
    """The send deadlines of a relay's claims, by lease token."""

    def __init__(self, lease_seconds: float, publish_timeout: float) -> None:
        # Here, not at the top: importing the relay (the Celery task does) loads no grpc.
        from django_ensign.client.deadline import clock

        self.clock = clock
        self._sure_for = lease_seconds * SEND_SHARE_OF_LEASE
        self._publish_timeout = publish_timeout
        self._windows: dict[uuid.UUID, _Window] = {}

    def open(self, token: uuid.UUID, started: float) -> None:
        """A claim made by a statement sent after ``started`` (a reading of :attr:`clock`)."""
        self._windows[token] = _Window(started + self._sure_for)

    def deadline(self, token: uuid.UUID) -> SendDeadline:
        """The deadline for a publish call, about to be made, of events of the claim (one
        already passed for a claim closed or never opened)."""
        from django_ensign.client.deadline import SendDeadline

        window = self._windows.get(token)
        latest = self.clock() + self._publish_timeout
        if window is None:  # closed: nothing of it may go out
            return SendDeadline(0.0)
        deadline = SendDeadline(min(window.lease_until, latest))
        window.deadlines.append((deadline, latest))
        return deadline

    def renewed(self, tokens: Iterable[uuid.UUID], started: float) -> None:
        """Leases renewed by a statement sent after ``started``."""
        now = self.clock()
        until = started + self._sure_for
        for token in tokens:
            window = self._windows.get(token)
            # A lease no longer certain stays so: it may have lapsed before the renewal ran
            # and another relay claimed the rows, which a renewal cannot tell (it extends
            # what is still ours, and only that). Still certain, it held when it ran.
            if window is not None and window.lease_until > now:
                window.lease_until = max(window.lease_until, until)
                for deadline, latest in window.deadlines:
                    deadline.at = min(window.lease_until, latest)

    def lease_certain(self, token: uuid.UUID) -> bool:
        """Whether the claim's lease is still certain (so a passed deadline was the publish
        timeout's)."""
        window = self._windows.get(token)
        return window is not None and window.lease_until > self.clock()

    def close(self, token: uuid.UUID) -> None:
        """Every row of the claim has its outcome: nothing of it goes out any more."""
        window = self._windows.pop(token, None)
        if window is not None:
            for deadline, _ in window.deadlines:
                deadline.at = 0.0  # an event the relay gave up on before the client did
