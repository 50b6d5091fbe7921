"""The bad-input suite's own server, a blocking gRPC connection to it, and PROTOCOL.md's answers.

The suite gets a server of its own (fuzzed topic names and events would otherwise land in
the shared server's project) and talks to it with grpcio's blocking API and identity
serializers, so a test can send any bytes at all. Hypothesis runs inside each test
(``@given`` on an inner function), bounded by ``FUZZ``, and every test ends by checking
that an ordinary publish is still acked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, settings

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2
from django_ensign.wire import ids
from tests.server.conftest import login, make_event
from tests.support.server import EmbeddedServer

#: Bounds of every property in this folder: the folder must run in a minute or two.
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SERVICE = "/ensign.v1beta1.Ensign/"
Status = grpc.StatusCode
#: One answer: the final status, its details, and the replies before it.
Answer = tuple[grpc.StatusCode, str, list[Any]]


def identity(raw: bytes) -> bytes:
    return raw


# ---- what PROTOCOL.md allows ------------------------------------------------------------

INVALID_CREDENTIALS = (Status.UNAUTHENTICATED, "invalid credentials")
MISSING_CREDENTIALS = (Status.UNAUTHENTICATED, "missing credentials")

#: Nack codes of the Publish stream and their errors (§3).
PUBLISH_NACKS: dict[int, set[str]] = {
    ensign_pb2.Nack.TOPIC_UNKNOWN: {
        "no topic id specified",
        "invalid topic id",
        "topic unknown or unhandled",
    },
    ensign_pb2.Nack.MAX_EVENT_SIZE_EXCEEDED: {"maximum event size has been exceeded"},
    ensign_pb2.Nack.TOPIC_ARCHIVED: {"topic is archived"},
    ensign_pb2.Nack.INTERNAL: {"internal error, please wait and try again"},
}

#: Final statuses of the Publish stream (§3).
PUBLISH_ENDINGS: dict[grpc.StatusCode, set[str]] = {
    Status.OK: {""},
    Status.FAILED_PRECONDITION: {
        "an open stream message must be sent immediately after opening the stream",
        "no topics available",
        "unhandled publisher request message <nil>",
    },
    Status.ABORTED: {
        "cannot send multiple open stream messages",
        "could not recv event from client",
    },
}

#: Final statuses of the Subscribe stream (§4); query errors carry the parser's message.
SUBSCRIBE_ENDINGS: dict[grpc.StatusCode, re.Pattern[str]] = {
    Status.OK: re.compile(r"^$"),
    Status.FAILED_PRECONDITION: re.compile(
        r"^(must send subscription to initialize stream|no topics available)$"
    ),
    Status.INVALID_ARGUMENT: re.compile(r"^(invalid query: .+|unknown topic in query)$"),
    Status.ABORTED: re.compile(r"^could not recv event from client$"),
}

#: Statuses a unary RPC may answer a well-formed request with (§2, §5).
UNARY_STATUSES = {
    Status.OK,
    Status.INVALID_ARGUMENT,
    Status.NOT_FOUND,
    Status.ALREADY_EXISTS,
    Status.PERMISSION_DENIED,
    Status.FAILED_PRECONDITION,
    Status.UNIMPLEMENTED,
}


# ---- the connection -----------------------------------------------------------------------


@dataclass
class FuzzTarget:
    """A blocking channel to the suite's server, with a token and a few real topics."""

    server: EmbeddedServer
    channel: grpc.Channel
    token: str
    topic_names: list[str]
    topic_ids: list[bytes]

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def unary(
        self, method: str, request: bytes, metadata: Any = None, timeout: float = 10.0
    ) -> Answer:
        """Call a unary method with raw request bytes; the status, details and reply."""
        call = self.channel.unary_unary(
            SERVICE + method, request_serializer=identity, response_deserializer=identity
        )
        try:
            reply = call(
                request, metadata=self.md if metadata is None else metadata, timeout=timeout
            )
        except grpc.RpcError as err:
            return err.code(), err.details() or "", []
        return Status.OK, "", [reply]

    def server_stream(self, method: str, request: bytes, timeout: float = 10.0) -> Answer:
        """Call a server-streaming method (EnSQL) with raw bytes; every reply and the status."""
        call = self.channel.unary_stream(
            SERVICE + method, request_serializer=identity, response_deserializer=identity
        )
        replies: list[bytes] = []
        responses = call(request, metadata=self.md, timeout=timeout)
        try:
            replies.extend(responses)
        except grpc.RpcError as err:
            return err.code(), err.details() or "", replies
        return Status.OK, "", replies

    def stream(
        self,
        method: str,
        requests: Iterable[bytes],
        *,
        first_only: bool = False,
        metadata: Any = None,
        timeout: float = 10.0,
    ) -> Answer:
        """Send raw messages on a bidi stream, half-close; every reply and the final status.

        ``first_only`` reads one reply and cancels (Subscribe never ends by itself).
        """
        call = self.channel.stream_stream(
            SERVICE + method, request_serializer=identity, response_deserializer=identity
        )
        responses: Any = call(
            iter(list(requests)),
            metadata=self.md if metadata is None else metadata,
            timeout=timeout,
        )
        replies: list[bytes] = []
        try:
            for reply in responses:
                replies.append(reply)
                if first_only:
                    responses.cancel()
                    return Status.OK, "", replies
        except grpc.RpcError as err:
            return err.code(), err.details() or "", replies
        return Status.OK, "", replies

    def project_topics(self) -> dict[str, bytes]:
        """Every topic of the project, name to id, as ListTopics gives them now."""
        from django_ensign.proto.api.v1beta1 import topic_pb2

        page = ensign_pb2.PageInfo(page_size=5000).SerializeToString()
        code, details, raw = self.unary("ListTopics", page)
        assert code == Status.OK, details
        return {t.name: t.id for t in topic_pb2.TopicsPage.FromString(raw[0]).topics}

    def assert_still_serving(self) -> None:
        """An ordinary publish on a new stream is acked."""
        local = ids.new_ulid()
        wrapper = event_pb2.EventWrapper(
            topic_id=self.topic_ids[0], event=make_event(b'{"ok": true}'), local_id=local
        )
        opened = ensign_pb2.PublisherRequest(open_stream=ensign_pb2.OpenStream(client_id="fuzz"))
        code, details, raw = self.stream(
            "Publish",
            [
                opened.SerializeToString(),
                ensign_pb2.PublisherRequest(event=wrapper).SerializeToString(),
            ],
        )
        assert (code, details) == (Status.OK, "")
        replies = [ensign_pb2.PublisherReply.FromString(r) for r in raw]
        kinds = [r.WhichOneof("embed") for r in replies]
        assert kinds == ["ready", "ack", "close_stream"]
        assert replies[1].ack.id == local


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The bad-input suite's own server."""
    server = EmbeddedServer(data_dir=tmp_path_factory.mktemp("fuzz-server")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def target(fuzz_server: EmbeddedServer) -> Iterator[FuzzTarget]:
    """A connection to ``fuzz_server``, whose project has the topics ``fuzzed`` and ``noise``."""
    channel = grpc.insecure_channel(
        fuzz_server.endpoint,
        options=[
            ("grpc.max_receive_message_length", 32 * 1024 * 1024),
            ("grpc.max_send_message_length", 32 * 1024 * 1024),
        ],
    )
    token = str(login(fuzz_server)["access_token"])
    fuzz = FuzzTarget(fuzz_server, channel, token, [], [])
    from django_ensign.proto.api.v1beta1 import topic_pb2

    for name in ("fuzzed", "noise"):
        code, details, raw = fuzz.unary(
            "CreateTopic", topic_pb2.Topic(name=name).SerializeToString()
        )
        assert code == Status.OK, details
        fuzz.topic_names.append(name)
        fuzz.topic_ids.append(topic_pb2.Topic.FromString(raw[0]).id)
    try:
        yield fuzz
    finally:
        channel.close()
