"""A token issuer whose clock is wrong: its tokens are refused, nothing is stored or acked.

The server has no option to skew its clock, so the test signs tokens with the server's own
key from its data directory, as an issuer running ahead of or behind real time would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from django_ensign.proto.api.v1beta1 import query_pb2, topic_pb2
from tests.faults.support import (
    Ledger,
    RelayThread,
    SkewedIssuer,
    acked_count,
    check_outbox_pipeline,
    quick_relay_options,
    sdk_client,
    wait_for,
    write_rows,
)
from tests.server.conftest import Conn, connect, login
from tests.support.server import EmbeddedServer

pytestmark = pytest.mark.timeout(120)

#: Issuer clock offsets (seconds): ahead (tokens not valid yet), behind (expired as issued).
SKEWS = {"ahead 10 min": 600.0, "behind 2 h": -7200.0}


@pytest.fixture
async def good(ensign_server: EmbeddedServer) -> AsyncIterator[Conn]:
    """A correctly authenticated connection to the shared server."""
    c = await connect(ensign_server)
    try:
        yield c
    finally:
        await c.channel.close()


@pytest.mark.parametrize("skew", list(SKEWS.values()), ids=list(SKEWS))
async def test_every_rpc_refuses_tokens_from_a_skewed_issuer(
    ensign_server: EmbeddedServer, good: Conn, skew: float, ledger: Ledger
) -> None:
    topic = await good.create_topic()
    new_name = f"{topic.name}-new"
    token = SkewedIssuer(ensign_server, good.token).token(skew)
    ledger.fault("issuer clock skew")
    skewed = await connect(ensign_server, token=token)
    md = skewed.md
    select = query_pb2.Query(query=f"SELECT * FROM {topic.name}")
    try:
        calls = {
            "CreateTopic": skewed.stub.CreateTopic(topic_pb2.Topic(name=new_name), metadata=md),
            "TopicExists": skewed.stub.TopicExists(
                topic_pb2.TopicName(name=topic.name), metadata=md
            ),
            "EnSQL": _first(skewed.stub.EnSQL(select, metadata=md)),
            # The streams are refused before the server reads a message; the test does not
            # write either, as a client write racing the refusal surfaces in grpcio as
            # INTERNAL "Internal error from Core" instead of the server's status.
            "Publish": skewed.publish_stream().read(),
            "Subscribe": skewed.subscribe_stream().read(),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert (err.value.code(), err.value.details()) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "invalid credentials",
            ), name
    finally:
        await skewed.channel.close()
    # Nothing the skewed caller sent was stored.
    exists = await good.stub.TopicExists(topic_pb2.TopicName(name=new_name), metadata=good.md)
    assert not exists.exists
    assert [e async for e in good.stub.EnSQL(select, metadata=good.md)] == []
    ledger.iterations += 1


async def _first(stream: object) -> object:
    async for item in stream:  # type: ignore[attr-defined]
        return item
    return None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres_only")
@pytest.mark.slow
def test_relay_waits_out_a_skewed_issuer_and_loses_nothing(
    fresh_server: EmbeddedServer, ledger: Ledger
) -> None:
    topic = "skewed"
    real_token = str(login(fresh_server)["access_token"])
    with SkewedIssuer(fresh_server, real_token) as issuer:
        issuer.skew = SKEWS["behind 2 h"]
        ledger.fault("issuer clock skew")
        relay = RelayThread(
            quick_relay_options(), lambda: sdk_client(fresh_server, auth_url=issuer.url)
        ).start()
        try:
            rows = write_rows(topic, 30)
            # The server refuses the tokens: the relay gives the rows back uncounted and
            # waits, as for an outage (the client logs in again each time).
            wait_for(lambda: relay.given_back > 0, 60, "rows given back while tokens are refused")
            assert acked_count(topic) == 0
            # The issuer's clock is put right, but overshoots: its tokens only become valid
            # some seconds later (nbf), and nobody needs to step in for the rows to go out.
            issuer.skew = 8.0
            ledger.fault("issuer clock skew")
            wait_for(lambda: acked_count(topic) == 30, 60, "every row acked")
        finally:
            relay.stop()
    ledger.iterations += 1
    verdict = check_outbox_pipeline(ledger, fresh_server, topic, rows, handled=False)
    verdict.assert_clean()
