"""The blocking facade, from plain code and from inside a running event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_ensign.client import Ack, ClientClosed, Event
from django_ensign.client.sync import SyncEnsign
from tests.support.server import EmbeddedServer


def make_sync_client(server: EmbeddedServer, **options: Any) -> SyncEnsign:
    """A blocking client of ``server`` configured by arguments."""
    creds = server.credentials
    return SyncEnsign(
        client_id=creds.client_id,
        client_secret=creds.client_secret,
        endpoint=server.endpoint,
        auth_url=server.auth_url,
        **options,
    )


@pytest.fixture
def sync_client(ensign_server: EmbeddedServer) -> Iterator[SyncEnsign]:
    client = make_sync_client(ensign_server)
    yield client
    client.close()


def test_publish_flush_and_query(sync_client: SyncEnsign, topic_name: Callable[[], str]) -> None:
    topic = topic_name()
    acked: list[Ack] = []
    events = [Event(b"%d" % i, "text/plain") for i in range(20)]
    sync_client.publish(topic, events, on_ack=acked.append, ensure_exists=True)
    sync_client.flush(timeout=10)
    assert isinstance(sync_client.wait_for_ack(events[0]), Ack)
    assert [e.data for e in sync_client.query(f"SELECT * FROM {topic}")] == [e.data for e in events]
    sync_client.close()
    assert len(acked) == 20


async def test_works_inside_a_running_loop(
    sync_client: SyncEnsign, topic_name: Callable[[], str]
) -> None:
    # As in a Django async view calling sync code without sync_to_async: this thread's
    # loop is blocked, the facade's own loop does the work.
    topic = topic_name()
    sync_client.create_topic(topic)
    event = Event(b"from a view", "text/plain")
    sync_client.publish(topic, event)
    assert isinstance(sync_client.wait_for_ack(event, timeout=10), Ack)
    assert sync_client.topic_exists(topic)
    await asyncio.sleep(0)


def test_subscribe_and_ack(sync_client: SyncEnsign, topic_name: Callable[[], str]) -> None:
    topic = topic_name()
    sync_client.create_topic(topic)
    with sync_client.subscribe(topic) as subscription:
        subscription_ready = subscription.next(timeout=0.2)
        assert subscription_ready is None
        sync_client.publish(topic, Event(b"hello", "text/plain"))
        received = subscription.next(timeout=10)
        assert received is not None
        assert received.data == b"hello"
        assert received.ack()
        assert received.acked()


def test_status_and_info(sync_client: SyncEnsign) -> None:
    assert sync_client.status().version
    assert sync_client.info().num_topics >= 0


def test_next_waits_by_its_own_timeout_beyond_the_call_timeout(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    client = make_sync_client(ensign_server, call_timeout=1.0)
    try:
        topic = topic_name()
        client.create_topic(topic)
        with client.subscribe(topic) as subscription:
            assert subscription.next(timeout=0.2) is None  # the stream is open
            # Published after the call timeout has passed: cut at call_timeout, the
            # waiting next() would take this event after its caller had gone.
            later = threading.Timer(
                1.5, lambda: client.publish(topic, Event(b"late", "text/plain"))
            )
            later.start()
            received = subscription.next(timeout=10)
            later.join()
            assert received is not None
            assert received.data == b"late"
    finally:
        client.close()


def test_a_subscription_closed_after_its_client_is_a_no_op(
    sync_client: SyncEnsign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    sync_client.create_topic(topic)
    subscription = sync_client.subscribe(topic)
    sync_client.close()
    subscription.close()


def test_calls_after_close_are_refused(sync_client: SyncEnsign) -> None:
    sync_client.close()
    with pytest.raises(ClientClosed):
        sync_client.status()
    with pytest.raises(ClientClosed):
        sync_client.get_topics()
