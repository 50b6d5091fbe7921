"""EnSQL over real gRPC (PROTOCOL.md §5) and its parser."""

from __future__ import annotations

import grpc
import pytest

from django_ensign.proto.api.v1beta1 import event_pb2, query_pb2
from django_ensign.server import ensql
from django_ensign.wire import ids
from tests.server.conftest import Conn, make_event, publish_all

Code = grpc.StatusCode


async def run(conn: Conn, query: str) -> list[bytes]:
    events = [e async for e in conn.stub.EnSQL(query_pb2.Query(query=query), metadata=conn.md)]
    return [event_pb2.Event.FromString(e.event).data for e in events]


@pytest.fixture
async def orders(conn: Conn) -> str:
    """A topic whose name begins with the keyword OR, holding four events."""
    name = "orders_" + ids.ulid_to_str(ids.new_ulid()).lower()
    topic = await conn.create_topic(name)
    await publish_all(
        conn,
        topic.id,
        [
            make_event(
                b"1",
                type_name="Order",
                version=(1, 0, 0),
                metadata={"region": "eu", "amount": "10"},
            ),
            make_event(
                b"2",
                type_name="Order",
                version=(2, 1, 0),
                metadata={"region": "us", "amount": "200"},
            ),
            make_event(
                b"3", type_name="Refund", mimetype=1, metadata={"region": "eu", "amount": "5"}
            ),
            make_event(b"4", type_name="Order", version=(1, 0, 0), metadata={"region": "EU"}),
        ],
    )
    return name


async def test_select_star_in_stored_order(conn: Conn, orders: str) -> None:
    assert await run(conn, f"SELECT * FROM {orders}") == [b"1", b"2", b"3", b"4"]
    assert await run(conn, f"select * from {orders};") == [b"1", b"2", b"3", b"4"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("region = 'eu'", [b"1", b"3"]),
        ("region != 'eu'", [b"2", b"4"]),
        ("region ILIKE 'eu'", [b"1", b"3", b"4"]),
        ("region LIKE 'e%'", [b"1", b"3"]),
        ("amount > 9", [b"1", b"2"]),
        ("amount <= 10", [b"1", b"3"]),
        ("type = 'Order' AND region = 'eu'", [b"1"]),
        ("type = 'Refund' OR amount >= 200", [b"2", b"3"]),
        ("type.version = '2.1.0'", [b"2"]),
        ("mimetype = 'text/plain'", [b"3"]),
        ("metadata.region = 'us'", [b"2"]),
        ("NOT (region = 'eu')", [b"2", b"4"]),
        ("missing = 'x'", []),
    ],
)
async def test_where(conn: Conn, orders: str, where: str, expected: list[bytes]) -> None:
    assert await run(conn, f"SELECT * FROM {orders} WHERE {where}") == expected


async def test_offset_and_exact_limit(conn: Conn, orders: str) -> None:
    assert await run(conn, f"SELECT * FROM {orders} LIMIT 2") == [b"1", b"2"]
    assert await run(conn, f"SELECT * FROM {orders} LIMIT 0") == []
    assert await run(conn, f"SELECT * FROM {orders} OFFSET 1 LIMIT 2") == [b"2", b"3"]
    assert await run(conn, f"SELECT * FROM {orders} WHERE region = 'eu' OFFSET 1") == [b"3"]
    assert await run(conn, f"SELECT * FROM {orders} OFFSET 10") == []


async def test_projection_is_accepted(conn: Conn, orders: str) -> None:
    assert len(await run(conn, f"SELECT region, amount FROM {orders}")) == 4


async def test_empty_topic_ends_ok(conn: Conn) -> None:
    topic = await conn.create_topic()
    assert await run(conn, f"SELECT * FROM {topic.name}") == []


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        "SELECT",
        "SELECT * FROM",
        "DELETE FROM {orders}",
        "SELECT * {orders}",
        "SELECT * FROM {orders} WHERE",
        "SELECT * FROM {orders} WHERE region",
        "SELECT * FROM {orders} LIMIT -1",
        "SELECT * FROM {orders} WHERE a = 'unterminated",
        "SELECT * FROM {orders} LIMIT 1 LIMIT 2",
        "SELECT * FROM {orders} garbage",
    ],
)
async def test_unparseable_queries_are_invalid(conn: Conn, orders: str, query: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run(conn, query.format(orders=orders))
    assert err.value.code() == Code.INVALID_ARGUMENT


async def test_unknown_topic(conn: Conn) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run(conn, "SELECT * FROM never_created_topic")
    assert (err.value.code(), err.value.details()) == (
        Code.INVALID_ARGUMENT,
        "unknown topic in query",
    )


async def test_explain_is_unimplemented(conn: Conn) -> None:
    await conn.create_topic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conn.stub.Explain(query_pb2.Query(query="SELECT * FROM x"), metadata=conn.md)
    assert err.value.code() == Code.UNIMPLEMENTED


def test_keywords_are_whole_words() -> None:
    for name in ("orders", "selection", "fromage", "limited", "offsets", "wherever", "android"):
        assert ensql.parse(f"SELECT * FROM {name} WHERE order = 'x'").topic == name


def test_topic_names_with_dots_and_dashes() -> None:
    assert ensql.parse("SELECT * FROM weather.readings-v1_a LIMIT 3").topic == (
        "weather.readings-v1_a"
    )
