"""A deadline after which queued events are no longer sent, which its owner can move on."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

#: The clock of send deadlines. On Linux it counts a machine's suspended time too, as the
#: wall clock that a database's lease expiry is measured in does.
clock: Callable[[], float] = (
    functools.partial(time.clock_gettime, time.CLOCK_BOOTTIME)
    if hasattr(time, "CLOCK_BOOTTIME")
    else time.monotonic
)


class SendDeadline:
    """Events published under it are sent, or sent again after a stream broke, only
    before :attr:`at` (a reading of :data:`clock`).

    After it, an event of theirs still waiting to go out fails with
    :class:`~django_ensign.client.exceptions.SendDeadlinePassed` instead, and is never
    sent; a write of theirs that gRPC still holds at the deadline (the server not reading)
    is cancelled with its stream. An event already handed to the network is not called
    back: the server may still store it. For a program whose right to send an event can
    lapse, such as a relay holding a lease on the row it came from: it moves :attr:`at`
    on while it still holds that right.
    """

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        if at != at:  # NaN would never pass, nor order among timers
            raise ValueError("a send deadline must be a number, not NaN")
        self.at = at

    @classmethod
    def after(cls, seconds: float) -> SendDeadline:
        """A deadline ``seconds`` from now."""
        return cls(clock() + seconds)

    def passed(self) -> bool:
        """Whether the deadline is behind us."""
        return self.at <= clock()

    def __repr__(self) -> str:
        return f"SendDeadline(in {self.at - clock():.3f} s)"
