"""The one place where gRPC errors become :mod:`django_ensign.client.exceptions` errors."""

from __future__ import annotations

import grpc

from django_ensign.client import exceptions

_BY_STATUS: dict[grpc.StatusCode, type[exceptions.RPCError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: exceptions.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: exceptions.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: exceptions.AlreadyExists,
    grpc.StatusCode.UNAUTHENTICATED: exceptions.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: exceptions.PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: exceptions.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: exceptions.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: exceptions.DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: exceptions.Unimplemented,
    grpc.StatusCode.CANCELLED: exceptions.Cancelled,
    grpc.StatusCode.ABORTED: exceptions.Aborted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: exceptions.ResourceExhausted,
    grpc.StatusCode.INTERNAL: exceptions.InternalError,
}

# Statuses after which a stream is worth reopening; everything else is the caller's problem.
RETRYABLE: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)


def translate(err: grpc.RpcError, *, context: str = "") -> exceptions.EnsignError:
    """Return the typed :class:`EnsignError` for a gRPC error (raise it ``from err``).

    ``context`` names what the caller was doing, e.g. ``"query"``, to pick a more
    specific class (``InvalidQuery``, ``TopicNotFound``).
    """
    code = _status(err)
    details = _details(err)
    cls: type[exceptions.RPCError] = _BY_STATUS.get(code, exceptions.RPCError)
    if cls is exceptions.InvalidArgument and context == "query":
        cls = exceptions.InvalidQuery
    elif cls is exceptions.NotFound and context == "topic":
        cls = exceptions.TopicNotFound
    return cls(describe(code, details), status=code.name, details=details)


#: What a TLS handshake reports when the server answered in plain text.
_PLAINTEXT_REPLY = "WRONG_VERSION_NUMBER"
_PLAINTEXT_HINT = (
    "the server does not speak TLS: for a plain-text server, such as `manage.py "
    "ensign_server`, set ENSIGN_INSECURE=true or pass insecure=True"
)


def describe(code: grpc.StatusCode, details: str) -> str:
    """A status and its details as one line, with a hint where gRPC's own words are cryptic."""
    message = f"{code.name}: {details}" if details else code.name
    if code == grpc.StatusCode.UNAVAILABLE and _PLAINTEXT_REPLY in details:
        # A TLS client pointed at a plain-text server fails every connection attempt
        # with only an OpenSSL reason code to go on, and keeps retrying.
        message = f"{message} ({_PLAINTEXT_HINT})"
    return message


def is_retryable(err: grpc.RpcError) -> bool:
    """Whether a broken stream with this error is worth reopening."""
    return _status(err) in RETRYABLE


def describe_error(err: grpc.RpcError) -> str:
    """:func:`describe` of a gRPC error, for logs of errors that are retried, not raised."""
    return describe(_status(err), _details(err))


def _status(err: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(err, "code", None)
    if callable(code):
        value = code()
        if isinstance(value, grpc.StatusCode):
            return value
    return grpc.StatusCode.UNKNOWN


def _details(err: grpc.RpcError) -> str:
    details = getattr(err, "details", None)
    if callable(details):
        value = details()
        if isinstance(value, str):
            return value
    return ""
