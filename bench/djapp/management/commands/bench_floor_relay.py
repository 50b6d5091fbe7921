"""``bench_floor_relay``: the least a Python relay on this stack does per event, as a floor.

It drains the outbox with the relay's own claim and ack statements
(:class:`django_ensign.pgasync.AsyncStatements`) and the SDK's own frame encoders
(:mod:`django_ensign.client.framing`), over a raw Publish stream with the batch extension,
and keeps nothing per event but a dict entry from local id to row. None of the relay's
and the SDK's per-event objects (claimed rows, events, pending entries, outcomes), no
retries, no nacks, no deadlines, no reconnects: a floor to read the relay's CPU per
event against, not a relay.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import Any

import grpc
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench import rawclient, streamdrive
from django_ensign import pgclaims
from django_ensign.client import framing
from django_ensign.client.events import parse_mimetype, parse_version
from django_ensign.conf import settings
from django_ensign.pgasync import AsyncStatements
from django_ensign.proto.api.v1beta1 import ensign_pb2
from django_ensign.wire import metadata


class Command(BaseCommand):
    help = "Drain --topic's outbox rows with a bare-bones relay (a CPU floor for relay-drain)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--topic", required=True, help="The one topic of the rows.")

    def handle(self, *args: Any, topic: str, **options: Any) -> None:
        published = asyncio.run(_drain(topic))
        self.stdout.write(json.dumps({"published": published}))


async def _drain(topic: str) -> int:
    token = await asyncio.to_thread(
        rawclient.access_token,
        settings.AUTH_URL,
        settings.CLIENT_ID or "",
        settings.CLIENT_SECRET or "",
    )
    session = rawclient.Session(grpc.aio.insecure_channel(settings.ENDPOINT), token)
    try:
        await session.create_topic(topic)
    except grpc.aio.AioRpcError as err:  # another floor process made it first
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    call, ready = await session.open_publish(topic)
    if not ready.HasField("batch"):
        raise CommandError("the server did not offer the batch extension")
    statements = await AsyncStatements.open("default")
    try:
        return await _Floor(call, ready.topics[topic], ready.batch.max_events, statements).run()
    finally:
        await statements.close()
        await session.channel.close()


class _Floor:
    def __init__(
        self, call: Any, topic_id: bytes, max_events: int, statements: AsyncStatements
    ) -> None:
        self.call = call
        self.topic_id = topic_id
        self.batch = min(settings.OUTBOX_BATCH_SIZE, max_events)
        self.statements = statements
        #: local id -> (row id, lease token) of every event sent and not acked yet.
        self.pending: dict[bytes, tuple[int, uuid.UUID]] = {}
        self.acks: list[pgclaims.Ack] = []
        self.replied = asyncio.Event()
        self.room = asyncio.Event()
        self.sent = 0
        self.claiming = True
        self._mimetypes: dict[str, int] = {}
        self._types: dict[tuple[str, str], bytes] = {}
        self._commits: dict[tuple[int, int], dt.datetime] = {}

    async def run(self) -> int:
        # A reader or recorder that fails cancels the claim loop rather than leaving it
        # waiting for replies that will never come.
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._read())
            recorder = tasks.create_task(self._record())
            await self._claim_all()
            await recorder
            await self.call.done_writing()
        return self.sent

    async def _claim_all(self) -> None:
        window = settings.OUTBOX_MAX_IN_FLIGHT
        while True:
            while len(self.pending) >= window:
                self.room.clear()
                await self.room.wait()
            rows = await self.statements.claim(
                limit=min(self.batch, window - len(self.pending)),
                lease_seconds=settings.OUTBOX_LEASE_SECONDS,
                topics=[],
            )
            if rows:
                await self.call.write(framing.batch_request([self._frame(row) for row in rows]))
            elif not self.pending:
                break
            else:  # what is left is in flight here or held by another process
                self.room.clear()
                await self.room.wait()
        self.claiming = False
        self.replied.set()

    def _frame(self, row: tuple[Any, ...]) -> bytes:
        lease, row_id, event_id, _, data, mime, type_name, version, meta, key, _ = row
        fields: dict[str, str] = json.loads(meta) if meta and len(meta) > 2 else {}
        fields[metadata.STABLE_ID_KEY] = event_id
        if key:
            fields[metadata.ORDERING_KEY] = key
        mimetype = self._mimetypes.get(mime)
        if mimetype is None:
            mimetype = self._mimetypes[mime] = parse_mimetype(mime)
        type_field = self._types.get((type_name, version))
        if type_field is None:
            name, number = type_name or "Unknown", parse_version(version or "0.0.0")
            type_field = self._types[(type_name, version)] = framing.event_type(name, number)
        self.sent += 1
        local_id = self.sent.to_bytes(16, "big")
        self.pending[local_id] = (row_id, lease)
        event = framing.event(bytes(data), fields, mimetype, type_field, time.time_ns())
        return framing.event_frame(self.topic_id, event, local_id)

    async def _read(self) -> None:
        while (raw := await self.call.read()) is not streamdrive.EOF:
            replies = ensign_pb2.PublisherReply.FromString(raw).replies
            if replies.nacks:
                raise CommandError(f"the server nacked: {replies.nacks[0].error}")
            for ack in replies.acks:
                row_id, lease = self.pending.pop(ack.id)
                self.acks.append((row_id, lease, self._committed(ack.committed)))
            self.replied.set()
            self.room.set()
        if self.pending:
            raise CommandError(f"the stream ended with {len(self.pending)} events unanswered")

    def _committed(self, stamp: Any) -> dt.datetime:
        key = (stamp.seconds, stamp.nanos)
        at = self._commits.get(key)
        if at is None:
            at = self._commits[key] = stamp.ToDatetime(tzinfo=dt.UTC)
        return at

    async def _record(self) -> None:
        while self.claiming or self.pending or self.acks:
            await self.replied.wait()
            self.replied.clear()
            acks, self.acks = self.acks, []
            await self.statements.record_acks(acks)
