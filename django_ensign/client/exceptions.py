"""Every error django-ensign raises derives from :class:`EnsignError`.

This module is Django-free so the SDK and server can share it; Django-side
errors live in :mod:`django_ensign.exceptions` and derive from the same root.
Each class's docstring is its default message.
"""

from __future__ import annotations


class EnsignError(Exception):
    """An Ensign operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


# --- configuration and input -------------------------------------------------


class ConfigurationError(EnsignError, ValueError):
    """The client is not configured correctly."""


class MissingCredentials(ConfigurationError):
    """No client id and secret: pass them, set ENSIGN_CLIENT_ID and ENSIGN_CLIENT_SECRET, or use cred_path."""  # noqa: E501


class InvalidEvent(EnsignError, ValueError):
    """The event is not valid."""


class EventDataTypeError(EnsignError, TypeError):
    """Event data must be bytes."""


class UnknownMimetypeError(InvalidEvent):
    """The mimetype has no Ensign enum value."""


class InvalidTopicName(EnsignError, ValueError):
    """A topic name or id is required."""


class UnknownTopic(EnsignError, LookupError):
    """The topic does not exist in the project (publish with ensure_exists=True to create it)."""

    def __init__(self, message: str | None = None, *, topic: str = "") -> None:
        super().__init__(message)
        self.topic = topic


class ClientClosed(EnsignError):
    """The client is closed."""


class CouldNotAck(EnsignError):
    """Only an event received from a subscription can be acked or nacked."""


# --- authentication ----------------------------------------------------------


class AuthenticationError(EnsignError):
    """Could not authenticate with the Ensign auth service."""


class AuthServiceUnreachable(AuthenticationError):
    """The Ensign auth service could not be reached."""


# --- publishing --------------------------------------------------------------


class PublishTimeout(EnsignError, TimeoutError):
    """No ack or nack arrived for the event before its deadline."""


class StreamDown(PublishTimeout):
    """No ack or nack before the deadline, and no publish stream was open at it.

    The server could not be reached (the client keeps trying): the event may not have
    been sent at all.
    """


class SendDeadlinePassed(EnsignError):
    """The event's :class:`~django_ensign.client.deadline.SendDeadline` passed before it
    was sent, or sent again after a stream broke, so it was not sent (again): a copy sent
    before the stream broke may still be stored."""


class FlushTimeout(EnsignError, TimeoutError):
    """Some published events had no ack or nack when the flush timed out."""


class LoopEnded(EnsignError):
    """The event loop that published the event ended before its ack or nack arrived.

    The server may or may not have stored it: publish it again from a running loop, or
    ``flush()`` or ``close()`` before the loop ends.
    """


class CallTimeout(EnsignError, TimeoutError):
    """A blocking call of the sync client outlasted its ``call_timeout``; it goes on running."""


class NackError(EnsignError):
    """The server refused the event."""

    def __init__(self, message: str | None = None, *, code: int = 0, error: str = "") -> None:
        super().__init__(message or error or None)
        self.code = code
        self.error = error


class StreamError(EnsignError):
    """The server broke the stream protocol."""


# --- RPC errors (built by django_ensign.client.errors.translate) -------------


class RPCError(EnsignError):
    """The Ensign server answered with an error."""

    def __init__(
        self, message: str | None = None, *, status: str = "UNKNOWN", details: str = ""
    ) -> None:
        super().__init__(message or details or None)
        self.status = status
        self.details = details


class InvalidArgument(RPCError, ValueError):
    """The server rejected an argument."""


class InvalidQuery(InvalidArgument):
    """The EnSQL query is not valid."""


class NotFound(RPCError, LookupError):
    """Not found."""


class TopicNotFound(NotFound):
    """Topic not found."""


class AlreadyExists(RPCError):
    """Already exists."""


class Unauthenticated(RPCError, AuthenticationError):
    """The server did not accept the credentials."""


class PermissionDenied(RPCError):
    """The API key lacks the permission for this action."""


class FailedPrecondition(RPCError):
    """The server cannot do this in its current state."""


class Unavailable(RPCError):
    """The Ensign server is unavailable."""


class DeadlineExceeded(RPCError, TimeoutError):
    """The call did not finish before its deadline."""


class Unimplemented(RPCError):
    """The server does not implement this call."""


class Cancelled(RPCError):
    """The call was cancelled."""


class Aborted(RPCError):
    """The server aborted the call."""


class ResourceExhausted(RPCError):
    """A server or message-size limit was hit."""


class InternalError(RPCError):
    """The server had an internal error."""


__all__ = [
    "Aborted",
    "AlreadyExists",
    "AuthServiceUnreachable",
    "AuthenticationError",
    "CallTimeout",
    "Cancelled",
    "ClientClosed",
    "ConfigurationError",
    "CouldNotAck",
    "DeadlineExceeded",
    "EnsignError",
    "EventDataTypeError",
    "FailedPrecondition",
    "FlushTimeout",
    "InternalError",
    "InvalidArgument",
    "InvalidEvent",
    "InvalidQuery",
    "InvalidTopicName",
    "LoopEnded",
    "MissingCredentials",
    "NackError",
    "NotFound",
    "PermissionDenied",
    "PublishTimeout",
    "RPCError",
    "ResourceExhausted",
    "StreamDown",
    "StreamError",
    "TopicNotFound",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UnknownMimetypeError",
    "UnknownTopic",
]
