"""gRPC errors become typed errors under the one root, in one function."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from django_ensign.client import Event, exceptions
from django_ensign.client.errors import is_retryable, translate
from tests.client.conftest import make_client
from tests.support.server import EmbeddedServer


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details, debug_error_string=None
    )


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, exceptions.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, exceptions.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, exceptions.AlreadyExists),
        (grpc.StatusCode.UNAUTHENTICATED, exceptions.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, exceptions.PermissionDenied),
        (grpc.StatusCode.FAILED_PRECONDITION, exceptions.FailedPrecondition),
        (grpc.StatusCode.UNAVAILABLE, exceptions.Unavailable),
        (grpc.StatusCode.UNIMPLEMENTED, exceptions.Unimplemented),
        (grpc.StatusCode.DATA_LOSS, exceptions.RPCError),
    ],
)
def test_status_codes_map_to_classes(code: grpc.StatusCode, cls: type[Exception]) -> None:
    error = translate(rpc_error(code, "what happened"))
    assert type(error) is cls
    assert isinstance(error, exceptions.EnsignError)
    assert isinstance(error, exceptions.RPCError)
    assert error.status == code.name
    assert error.details == "what happened"
    assert "what happened" in str(error)


def test_context_picks_a_narrower_class() -> None:
    assert type(translate(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "x"), context="query")) is (
        exceptions.InvalidQuery
    )
    assert type(translate(rpc_error(grpc.StatusCode.NOT_FOUND, "x"), context="topic")) is (
        exceptions.TopicNotFound
    )


def test_only_transient_failures_are_retried() -> None:
    assert is_retryable(rpc_error(grpc.StatusCode.UNAVAILABLE, ""))
    assert not is_retryable(rpc_error(grpc.StatusCode.PERMISSION_DENIED, ""))
    assert not is_retryable(rpc_error(grpc.StatusCode.UNAUTHENTICATED, ""))


def test_every_sdk_error_derives_from_the_root_and_documents_itself() -> None:
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, exceptions.EnsignError)
        assert cls.__doc__
        assert str(cls()) == cls.__doc__.strip()


async def test_a_tls_client_of_a_plain_text_server_is_told_to_set_insecure(
    ensign_server: EmbeddedServer,
) -> None:
    client = make_client(ensign_server, insecure=False)
    try:
        with pytest.raises(exceptions.Unavailable) as raised:
            await client.publish("tls-mismatch", Event(b"x", "text/plain"))
    finally:
        await client.close()
    assert "does not speak TLS" in str(raised.value)
    assert "ENSIGN_INSECURE=true" in str(raised.value)


def test_other_unavailable_errors_get_no_tls_hint() -> None:
    error = translate(rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection refused"))
    assert str(error) == "UNAVAILABLE: Connection refused"
