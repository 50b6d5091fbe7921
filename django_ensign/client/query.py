"""EnSQL queries: a cursor that is both awaitable and an async iterator of events."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Mapping
from typing import Any

import grpc
import grpc.aio

from django_ensign.client import exceptions
from django_ensign.client.connection import EOF, Connection
from django_ensign.client.errors import translate
from django_ensign.client.events import ReceivedEvent
from django_ensign.client.topics import TopicAdmin
from django_ensign.proto.api.v1beta1 import query_pb2

ParamValue = bool | int | float | bytes | str


def build_query(
    query: str, params: Mapping[str, ParamValue] | None = None, include_duplicates: bool = False
) -> query_pb2.Query:
    """The ``Query`` message for an EnSQL string and its named parameters."""
    if not isinstance(query, str):
        raise exceptions.InvalidQuery("query must be a string")
    query = query.strip()
    if not query:
        raise exceptions.InvalidQuery("query must not be empty")
    parameters = []
    for name, value in (params or {}).items():
        if isinstance(value, bool):
            parameters.append(query_pb2.Parameter(name=name, b=value))
        elif isinstance(value, int):
            parameters.append(query_pb2.Parameter(name=name, i=value))
        elif isinstance(value, float):
            parameters.append(query_pb2.Parameter(name=name, d=value))
        elif isinstance(value, bytes):
            parameters.append(query_pb2.Parameter(name=name, y=value))
        elif isinstance(value, str):
            parameters.append(query_pb2.Parameter(name=name, s=value))
        else:
            raise exceptions.InvalidQuery(
                f"unsupported parameter type {type(value).__name__} for {name!r}"
            )
    return query_pb2.Query(query=query, params=parameters, include_duplicates=include_duplicates)


class QueryCursor:
    """The results of an EnSQL query, in stored order.

    ``async for event in client.query(...)`` streams them; ``cursor = await client.query(...)``
    starts the query (raising InvalidQuery at once) and offers ``fetchone()``,
    ``fetchmany(n)`` and ``fetchall()`` as the official SDK's cursor does.
    """

    def __init__(self, connection: Connection, topics: TopicAdmin, query: query_pb2.Query) -> None:
        self._connection = connection
        self._topics = topics
        self._listed = False
        self._query = query
        self._call: Any = None
        self._finished = False
        self._peeked: ReceivedEvent | None = None

    def __await__(self) -> Generator[Any, None, QueryCursor]:
        return self._start().__await__()

    async def _start(self) -> QueryCursor:
        if self._call is None and not self._finished:
            metadata = await self._connection.tokens.metadata()
            self._call = self._connection.resources().stub.EnSQL(self._query, metadata=metadata)
            # Read ahead one result so a refused query raises here, not at the first fetch.
            self._peeked = await self._read()
        return self

    async def _read(self) -> ReceivedEvent | None:
        if self._finished:
            return None
        try:
            wrapper = await self._call.read()
        except grpc.aio.AioRpcError as err:
            self._finish()
            if err.code() == grpc.StatusCode.CANCELLED:
                return None
            raise translate(err, context="query") from err
        if wrapper is EOF:
            self._finish()
            return None
        name = self._topics.cache.name(wrapper.topic_id)
        if name is None and not self._listed:
            # A topic this client has not met yet: one listing names every topic.
            self._listed = True
            with contextlib.suppress(exceptions.EnsignError):
                await self._topics.get_topics()
            name = self._topics.cache.name(wrapper.topic_id)
        return ReceivedEvent(wrapper, name or "")

    async def __aenter__(self) -> QueryCursor:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> QueryCursor:
        return self

    async def __anext__(self) -> ReceivedEvent:
        event = await self.fetchone()
        if event is None:
            raise StopAsyncIteration
        return event

    async def fetchone(self) -> ReceivedEvent | None:
        """The next event, or None after the last."""
        await self._start()
        if self._peeked is not None:
            event, self._peeked = self._peeked, None
            return event
        return await self._read()

    async def fetchmany(self, n: int) -> list[ReceivedEvent]:
        """Up to ``n`` more events."""
        events: list[ReceivedEvent] = []
        while len(events) < n:
            event = await self.fetchone()
            if event is None:
                break
            events.append(event)
        return events

    async def fetchall(self) -> list[ReceivedEvent]:
        """Every remaining event."""
        events: list[ReceivedEvent] = []
        async for event in self:
            events.append(event)
        return events

    def _finish(self) -> None:
        self._finished = True
        call, self._call = self._call, None
        if call is not None:
            with contextlib.suppress(Exception):
                call.cancel()

    def close(self) -> None:
        """Stop the query."""
        self._peeked = None
        self._finish()
