"""Whose fault a failed publish is: the event's, or Ensign's and the relay's settings'.

An outbox row counts an attempt each time it is claimed, and too many attempts make it
dead. That is right for an event the server nacks or never answers, but an event cannot
make an unreachable server, a wrong secret or a key without the publisher permission go
away by being tried again: such failures give the rows back uncounted, and the relay
itself waits (an outage) or stops with the reason (its settings).
"""

from __future__ import annotations

import enum

from django_ensign.client import exceptions as sdk


class Trouble(enum.Enum):
    """Why nothing could be published, whichever event was tried."""

    #: Ensign cannot be reached now (a restart, a network outage): wait and try again.
    UNREACHABLE = "unreachable"
    #: Ensign refuses this relay (credentials, permissions): someone must fix the settings.
    REFUSED = "refused"


#: Checked first: the auth service being down is an AuthenticationError too, and a token
#: the server refuses (a skewed clock, a rotated signing key) is renewed by the client.
_UNREACHABLE = (
    sdk.AuthServiceUnreachable,
    sdk.Unauthenticated,
    sdk.Unavailable,
    sdk.Aborted,
    sdk.StreamError,
    OSError,
)
_REFUSED = (sdk.ConfigurationError, sdk.AuthenticationError, sdk.PermissionDenied)


def trouble(error: BaseException | None) -> Trouble | None:
    """The relay-wide trouble ``error`` shows, or None if it concerns the events tried."""
    if isinstance(error, sdk.StreamDown):
        return Trouble.UNREACHABLE
    if isinstance(error, TimeoutError):
        return None  # an event not answered on an open stream (TimeoutError is an OSError)
    if isinstance(error, _UNREACHABLE):
        return Trouble.UNREACHABLE
    if isinstance(error, _REFUSED):
        return Trouble.REFUSED
    return None
