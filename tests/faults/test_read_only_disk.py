"""The server's disk turns read-only under it: events are nacked INTERNAL, never acked unstored.

The server runs with its data directory on a small ext4 loop filesystem; the test raises
an ext4 error through sysfs, and the kernel remounts it read-only as it does when a disk
fails. After an operator's repair (fsck, mount, restart), exactly the acked events are there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_ensign.models import OutboxEvent, OutboxStatus
from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2, query_pb2
from tests.faults.support import (
    Ext4Volume,
    Ledger,
    RelayThread,
    acked_count,
    check_outbox_pipeline,
    quick_relay_options,
    sdk_client,
    wait_for,
    write_rows,
)
from tests.server.conftest import EOF, Conn, connect, event_req, make_event, open_req, wrapper
from tests.support.server import EmbeddedServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

INTERNAL = ensign_pb2.Nack.INTERNAL
INTERNAL_ERROR = "internal error, please wait and try again"


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Ext4Volume]:
    """A fresh ext4 loop filesystem, unmounted and deleted at the end."""
    reason = Ext4Volume.unavailable()
    if reason:
        pytest.skip(reason)
    disk = Ext4Volume(tmp_path / "disk")
    try:
        disk.create()
    except (PermissionError, OSError) as err:
        pytest.skip(str(err))
    try:
        yield disk
    finally:
        disk.destroy()


@pytest.fixture
def disk_server(volume: Ext4Volume) -> Iterator[EmbeddedServer]:
    """A server whose data directory is on ``volume``."""
    server = EmbeddedServer(data_dir=volume.mountpoint / "ensign").start()
    try:
        yield server
    finally:
        server.kill()


async def publish(call: Any, topic_id: bytes, label: str, count: int) -> list[Any]:
    """Send ``count`` events whose data is ``label-i`` and read one reply for each."""
    for n in range(count):
        await call.write(event_req(wrapper(topic_id, make_event(f"{label}-{n}".encode()))))
    return [await call.read() for _ in range(count)]


async def stored_data(c: Conn, topic: str) -> list[bytes]:
    query = query_pb2.Query(query=f"SELECT * FROM {topic}")
    return [
        event_pb2.Event.FromString(w.event).data async for w in c.stub.EnSQL(query, metadata=c.md)
    ]


async def test_writes_on_a_read_only_disk_are_nacked_internal_and_nothing_unstored_is_acked(
    volume: Ext4Volume, disk_server: EmbeddedServer, ledger: Ledger
) -> None:
    c = await connect(disk_server)
    try:
        await c.create_topic("disk")
        call = c.publish_stream()
        await call.write(open_req())
        topic_id = (await call.read()).ready.topics["disk"]
        before = await publish(call, topic_id, "before", 20)
        assert [r.WhichOneof("embed") for r in before] == ["ack"] * 20

        volume.fail()
        ledger.fault("read-only disk")
        assert volume.is_read_only()
        after = await publish(call, topic_id, "after", 20)
        assert {(r.nack.code, r.nack.error) for r in after} == {(INTERNAL, INTERNAL_ERROR)}
        # The stream survives the failure and the server still answers reads.
        await call.done_writing()
        close = await call.read()
        assert (close.close_stream.acks, close.close_stream.nacks) == (20, 20)
        assert await call.read() is EOF
        acked = [f"before-{n}".encode() for n in range(20)]
        assert await stored_data(c, "disk") == acked
    finally:
        await c.channel.close()

    # The operator's repair; then exactly the acked events are on disk, and writes work.
    await asyncio.to_thread(disk_server.kill)
    await asyncio.to_thread(volume.repair)
    await asyncio.to_thread(disk_server.start)
    ledger.iterations += 1
    c = await connect(disk_server)
    try:
        stored = await stored_data(c, "disk")
        ledger.events_checked += 40
        ledger.lost += len(set(acked) - set(stored))
        assert stored == acked
        call = c.publish_stream()
        await call.write(open_req())
        await call.read()
        again = await publish(call, topic_id, "again", 1)
        assert again[0].WhichOneof("embed") == "ack"
        call.cancel()
    finally:
        await c.channel.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres_only")
def test_relay_retries_through_a_read_only_disk_and_loses_nothing(
    volume: Ext4Volume, disk_server: EmbeddedServer, ledger: Ledger
) -> None:
    topic = "diskrelay"
    relay = RelayThread(quick_relay_options(), lambda: sdk_client(disk_server)).start()
    try:
        rows = write_rows(topic, 30)
        wait_for(lambda: acked_count(topic) == 30, 60, "the first rows acked")
        volume.fail()
        ledger.fault("read-only disk")
        rows += write_rows(topic, 30, start=30)
        wait_for(
            lambda: OutboxEvent.objects.filter(topic=topic, nack_code=INTERNAL).exists(),
            60,
            "an INTERNAL nack",
        )
        assert acked_count(topic) == 30, "nothing is acked while the disk is read-only"
        disk_server.kill()
        volume.repair()
        disk_server.start()
        ledger.iterations += 1
        wait_for(lambda: acked_count(topic) == 60, 60, "every row acked after the repair")
    finally:
        relay.stop()
    assert not OutboxEvent.objects.filter(topic=topic).exclude(status=OutboxStatus.ACKED).exists()
    verdict = check_outbox_pipeline(ledger, disk_server, topic, rows, handled=False)
    verdict.assert_clean()
