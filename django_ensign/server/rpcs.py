"""Unary and server-streaming RPCs: topics, policy, Info, Status and EnSQL (PROTOCOL.md §5)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2, query_pb2, topic_pb2
from django_ensign.server import ensql
from django_ensign.server.groups import GroupManager
from django_ensign.server.state import ServerState
from django_ensign.server.storage import TopicRecord, event_key, read_range
from django_ensign.server.streamcall import Context
from django_ensign.server.topics import DELETING, READONLY, READY, name_error
from django_ensign.wire import ids, topichash

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 5000
_DEFAULT_DEDUP = topic_pb2.Deduplication(
    strategy=topic_pb2.Deduplication.NONE, offset=topic_pb2.Deduplication.OFFSET_EARLIEST
).SerializeToString()
_TOPIC_READERS = ("topics:read", "publisher", "subscriber")


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


def topic_message(topic: TopicRecord) -> topic_pb2.Topic:
    """The wire form of a topic."""
    return topic_pb2.Topic(
        id=topic.id,
        project_id=topic.project_id,
        name=topic.name,
        readonly=topic.state == READONLY,
        offset=topic.offset,
        shards=1,
        status=topic.state,  # type: ignore[arg-type]
        deduplication=topic_pb2.Deduplication.FromString(topic.dedup),
        created=_timestamp(topic.created_ns),
        modified=_timestamp(topic.modified_ns),
    )


def _encode_page(last_id: bytes) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id.hex()}).encode()).decode()


def _decode_page(token: str) -> bytes | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = bytes.fromhex(data["after"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return after if len(after) == 16 else None


@dataclass
class _Tally:
    events: int = 0
    duplicates: int = 0
    size: int = 0
    committed: int = 0
    last: bytes = b""


TypeKey = tuple[bytes, str, tuple[int, int, int], int]


def _type_counts(
    conn: sqlite3.Connection, topics: list[tuple[bytes, int]]
) -> dict[TypeKey, _Tally]:
    """Exact per-(topic, type, version, mimetype) counts, read from every stored event."""
    tallies: dict[TypeKey, _Tally] = {}
    parse_wrapper = event_pb2.EventWrapper.FromString
    parse_event = event_pb2.Event.FromString
    for topic_id, seq in topics:
        cursor = conn.execute(
            "SELECT wrapper, size, is_duplicate, committed, rlid FROM events"
            " WHERE id > ? AND id < ? ORDER BY id",
            (event_key(seq, 0), event_key(seq + 1, 0)),
        )
        for wrapper, size, is_dup, committed, rlid in cursor:
            try:
                event = parse_event(parse_wrapper(wrapper).event)
            except Exception:
                event = event_pb2.Event()
            ty = event.type
            key = (
                topic_id,
                ty.name,
                (ty.major_version, ty.minor_version, ty.patch_version),
                int(event.mimetype),
            )
            tally = tallies.get(key)
            if tally is None:
                tally = tallies[key] = _Tally()
            tally.events += 1
            tally.duplicates += is_dup
            tally.size += size
            tally.committed = max(tally.committed, committed)
            tally.last = max(tally.last, bytes(rlid))
    return tallies


class Rpcs:
    """Handlers for every RPC except Publish and Subscribe."""

    def __init__(self, state: ServerState, groups: GroupManager) -> None:
        self.state = state
        self.groups = groups
        self._destroying: dict[bytes, asyncio.Task[None]] = {}

    # ---- topics ---------------------------------------------------------------------
    async def CreateTopic(self, request: topic_pb2.Topic, context: Context) -> topic_pb2.Topic:
        """Create a topic in the caller's project."""
        claims = await self.state.guard.check(context, any_of=("topics:create",))
        if request.project_id and request.project_id != claims.project_id:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "not authorized to perform this action"
            )
        problem = name_error(request.name)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        existing = self.state.registry.by_name(claims.project_id, request.name)
        if existing is not None and existing.state == DELETING:
            # The name is free once the background destroy has removed the old topic.
            pending = self._destroying.get(existing.id)
            if pending is not None:
                await asyncio.shield(pending)
            existing = self.state.registry.by_name(claims.project_id, request.name)
        if existing is not None:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS, "topic name already exists in project"
            )
        now = time.time_ns()
        topic = TopicRecord(
            ids.new_ulid(), 0, claims.project_id, request.name, READY, _DEFAULT_DEDUP, now, now
        )
        storage = self.state.storage

        def insert(conn: sqlite3.Connection) -> None:
            topic.seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM topics").fetchone()[0]
            conn.execute(
                "INSERT INTO topics (id, seq, project_id, name, state, dedup, created, modified)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    topic.id,
                    topic.seq,
                    topic.project_id,
                    topic.name,
                    topic.state,
                    topic.dedup,
                    now,
                    now,
                ),
            )
            storage.register_topic(topic.id, topic.seq)

        try:
            await storage.write(insert)
        except sqlite3.IntegrityError:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS, "topic name already exists in project"
            )
        self.state.registry.add(topic)
        return topic_message(topic)

    async def _topic_by_bytes(self, raw: bytes, project_id: bytes, context: Context) -> TopicRecord:
        if not raw:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "missing topic id field")
        if len(raw) != 16:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid topic id field")
        topic = self.state.registry.by_id.get(raw)
        if topic is None or topic.project_id != project_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "topic not found")
        return topic

    async def _topic_by_str(self, text: str, project_id: bytes, context: Context) -> TopicRecord:
        if not text:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "missing topic id field")
        try:
            raw = ids.ulid_from_str(text)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid topic id field")
        return await self._topic_by_bytes(raw, project_id, context)

    async def RetrieveTopic(self, request: topic_pb2.Topic, context: Context) -> topic_pb2.Topic:
        """One topic of the caller's project by its 16-byte id."""
        claims = await self.state.guard.check(context, any_of=("topics:read",))
        topic = await self._topic_by_bytes(request.id, claims.project_id, context)
        return topic_message(topic)

    async def _page(
        self, request: ensign_pb2.PageInfo, project_id: bytes, context: Context
    ) -> tuple[list[TopicRecord], str]:
        size = request.page_size or DEFAULT_PAGE_SIZE
        size = min(size, MAX_PAGE_SIZE)
        topics = self.state.registry.of_project(project_id)
        if request.next_page_token:
            after = _decode_page(request.next_page_token)
            if after is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid page token")
            topics = [t for t in topics if t.id > after]
        page = topics[:size]
        token = _encode_page(page[-1].id) if len(topics) > size else ""
        return page, token

    async def ListTopics(
        self, request: ensign_pb2.PageInfo, context: Context
    ) -> topic_pb2.TopicsPage:
        """A page of the project's topics."""
        claims = await self.state.guard.check(context, any_of=("topics:read",))
        page, token = await self._page(request, claims.project_id, context)
        return topic_pb2.TopicsPage(topics=[topic_message(t) for t in page], next_page_token=token)

    async def TopicNames(
        self, request: ensign_pb2.PageInfo, context: Context
    ) -> topic_pb2.TopicNamesPage:
        """A page of (topic id, project id, name hash) for the project's topics."""
        claims = await self.state.guard.check(context, any_of=_TOPIC_READERS)
        page, token = await self._page(request, claims.project_id, context)
        names = [
            topic_pb2.TopicName(
                topic_id=ids.ulid_to_str(t.id),
                project_id=ids.ulid_to_str(t.project_id),
                name=topichash.topic_hash_str(t.name),
            )
            for t in page
        ]
        return topic_pb2.TopicNamesPage(topic_names=names, next_page_token=token)

    async def TopicExists(
        self, request: topic_pb2.TopicName, context: Context
    ) -> topic_pb2.TopicExistsInfo:
        """Whether a topic with the given name and/or id exists in the project."""
        claims = await self.state.guard.check(context, any_of=_TOPIC_READERS)
        if not request.name and not request.topic_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "must specify either or both topic name and id"
            )
        parts: list[str] = []
        candidates = self.state.registry.of_project(claims.project_id)
        if request.topic_id:
            parts.append(f'id="{request.topic_id}"')
            try:
                raw = ids.ulid_from_str(request.topic_id)
            except ValueError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid topic id field")
            candidates = [t for t in candidates if t.id == raw]
        if request.name:
            parts.append(f'name="{request.name}"')
            candidates = [t for t in candidates if t.name == request.name]
        return topic_pb2.TopicExistsInfo(query=" AND ".join(parts), exists=bool(candidates))

    async def DeleteTopic(
        self, request: topic_pb2.TopicMod, context: Context
    ) -> topic_pb2.TopicStatus:
        """Archive (read-only) or destroy (in the background) a topic."""
        guard = self.state.guard
        claims = await guard.check(context, any_of=("topics:edit", "topics:destroy"))
        op = request.operation
        if op == topic_pb2.TopicMod.ARCHIVE:
            await guard.check(context, all_of=("topics:edit",))
        elif op == topic_pb2.TopicMod.DESTROY:
            await guard.check(context, all_of=("topics:destroy",))
        else:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid operation field")
        topic = await self._topic_by_str(request.id, claims.project_id, context)
        if topic.state == DELETING:
            return topic_pb2.TopicStatus(id=ids.ulid_to_str(topic.id), state=DELETING)  # type: ignore[arg-type]
        new_state = READONLY if op == topic_pb2.TopicMod.ARCHIVE else DELETING
        now = time.time_ns()

        def mark(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE topics SET state = ?, modified = ? WHERE id = ?", (new_state, now, topic.id)
            )

        await self.state.storage.write(mark)
        topic.state, topic.modified_ns = new_state, now
        if new_state == DELETING:
            self.schedule_destroy(topic)
        return topic_pb2.TopicStatus(id=ids.ulid_to_str(topic.id), state=new_state)  # type: ignore[arg-type]

    def schedule_destroy(self, topic: TopicRecord) -> None:
        """Remove a topic and its events in the background."""
        task = asyncio.get_running_loop().create_task(self._destroy(topic))
        self._destroying[topic.id] = task
        task.add_done_callback(lambda _: self._destroying.pop(topic.id, None))

    async def _destroy(self, topic: TopicRecord) -> None:
        storage = self.state.storage

        def remove(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM events WHERE id > ? AND id < ?",
                (event_key(topic.seq, 0), event_key(topic.seq + 1, 0)),
            )
            conn.execute("DELETE FROM group_offsets WHERE topic_id = ?", (topic.id,))
            conn.execute("DELETE FROM topics WHERE id = ?", (topic.id,))
            storage.forget_topic(topic.id)

        try:
            await storage.write(remove)
        except Exception:
            log.exception("could not destroy topic %s", ids.ulid_to_str(topic.id))
            return
        self.state.registry.remove(topic.id)
        self.state.broker.forget(topic.id)
        self.groups.forget_topic(topic.id)

    async def SetTopicPolicy(
        self, request: topic_pb2.TopicPolicy, context: Context
    ) -> topic_pb2.TopicStatus:
        """Change a topic's deduplication policy (applied to new events)."""
        claims = await self.state.guard.check(context, any_of=("topics:edit",))
        topic = await self._topic_by_str(request.id, claims.project_id, context)
        if request.sharding_strategy not in (topic_pb2.UNKNOWN, topic_pb2.NO_SHARDING):
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "changing the sharding strategy is not supported"
            )
        policy = request.deduplication_policy
        strategy = policy.strategy
        if request.HasField("deduplication_policy") and strategy != topic_pb2.Deduplication.UNKNOWN:
            if strategy == topic_pb2.Deduplication.UNIQUE_FIELD:
                await context.abort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    "the UNIQUE_FIELD deduplication strategy is not supported",
                )
            if (
                strategy
                in (topic_pb2.Deduplication.KEY_GROUPED, topic_pb2.Deduplication.UNIQUE_KEY)
                and not policy.keys
            ):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "deduplication strategy requires keys"
                )
            stored = topic_pb2.Deduplication()
            stored.CopyFrom(policy)
            if stored.offset == topic_pb2.Deduplication.OFFSET_UNKNOWN:
                stored.offset = topic_pb2.Deduplication.OFFSET_EARLIEST
            dedup = stored.SerializeToString()
            now = time.time_ns()
            storage = self.state.storage

            def save(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "UPDATE topics SET dedup = ?, modified = ? WHERE id = ?", (dedup, now, topic.id)
                )
                storage.set_dedup(topic.id, dedup)

            await storage.write(save)
            topic.dedup, topic.modified_ns = dedup, now
        return topic_pb2.TopicStatus(id=ids.ulid_to_str(topic.id), state=topic.state)  # type: ignore[arg-type]

    # ---- project info and status -----------------------------------------------------
    async def Info(
        self, request: ensign_pb2.InfoRequest, context: Context
    ) -> ensign_pb2.ProjectInfo:
        """Exact event, duplicate and byte counts for the project and its topics."""
        claims = await self.state.guard.check(context, all_of=("topics:read", "metrics:read"))
        topics = self.state.registry.of_project(claims.project_id)
        if request.topics:
            for raw in request.topics:
                if len(raw) != 16:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid topic id")
            wanted = set(request.topics)
            topics = [t for t in topics if t.id in wanted]
        rows = await self.state.storage.read(
            functools.partial(_type_counts, topics=[(t.id, t.seq) for t in topics])
        )
        infos: dict[bytes, topic_pb2.TopicInfo] = {}
        for topic in topics:
            infos[topic.id] = topic_pb2.TopicInfo(
                topic_id=topic.id,
                project_id=topic.project_id,
                modified=_timestamp(topic.modified_ns),
            )
        for (tid, name, version, mime), tally in rows.items():
            info = infos[tid]
            major, minor, patch = version
            info.types.append(
                topic_pb2.EventTypeInfo(
                    type=event_pb2.Type(
                        name=name, major_version=major, minor_version=minor, patch_version=patch
                    ),
                    mimetype=mime,  # type: ignore[arg-type]
                    events=tally.events,
                    duplicates=tally.duplicates,
                    data_size_bytes=tally.size,
                    modified=_timestamp(tally.committed),
                )
            )
            info.events += tally.events
            info.duplicates += tally.duplicates
            info.data_size_bytes += tally.size
            if tally.last > info.event_offset_id:
                info.event_offset_id = tally.last
        project = ensign_pb2.ProjectInfo(
            project_id=claims.project_id,
            num_topics=len(topics),
            num_readonly_topics=sum(1 for t in topics if t.state == READONLY),
            topics=list(infos.values()),
        )
        for info in infos.values():
            project.events += info.events
            project.duplicates += info.duplicates
            project.data_size_bytes += info.data_size_bytes
        return project

    async def Status(
        self, request: ensign_pb2.HealthCheck, context: Context
    ) -> ensign_pb2.ServiceState:
        """Service health; needs no credentials."""
        now = time.time_ns()
        uptime = duration_pb2.Duration()
        uptime.FromNanoseconds(int((time.monotonic() - self.state.started_mono) * 1e9))
        return ensign_pb2.ServiceState(
            status=ensign_pb2.ServiceState.HEALTHY,
            version=self.state.version,
            uptime=uptime,
            not_before=_timestamp(now + 30 * 1_000_000_000),
            not_after=_timestamp(now + 300 * 1_000_000_000),
        )

    # ---- queries ---------------------------------------------------------------------
    async def _parse(self, request: query_pb2.Query, context: Context) -> tuple[ensql.Query, bytes]:
        claims = await self.state.guard.check(context, any_of=("subscriber", "topics:read"))
        try:
            query = ensql.parse(request.query)
        except ensql.QueryError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"could not parse query: {exc}")
        topic = self.state.registry.by_name(claims.project_id, query.topic)
        if topic is None or topic.state == DELETING:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown topic in query")
        return query, topic.id

    async def EnSQL(self, request: query_pb2.Query, context: Context) -> AsyncIterator[bytes]:
        """Stream the stored events a query selects, in stored order."""
        query, topic_id = await self._parse(request, context)
        skip = query.offset
        remaining = query.limit
        after = 0
        storage = self.state.storage
        while remaining is None or remaining > 0:
            rows = await storage.read(
                functools.partial(read_range, topic_id=topic_id, after=after, limit=500)
            )
            if not rows:
                return
            after = rows[-1].offset
            for row in rows:
                if row.is_duplicate and not request.include_duplicates:
                    continue
                if query.where is not None and not query.matches(
                    ensql.row_from_wrapper(row.wrapper)
                ):
                    continue
                if skip:
                    skip -= 1
                    continue
                yield row.wrapper
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return

    async def Explain(
        self, request: query_pb2.Query, context: Context
    ) -> query_pb2.QueryExplanation:
        """Not implemented, as on the real server."""
        await self.state.guard.check(context, any_of=("subscriber", "topics:read"))
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "explain is not implemented")
