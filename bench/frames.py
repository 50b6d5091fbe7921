"""The bytes on the wire: publish requests and replies, built once and spliced per event.

Both the echo ceiling and the server-ingest benchmark send these exact frames and parse
the replies with the same code, so the client's cost is equal on both sides of a ratio
and the ratio measures what sits behind the socket.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2
from django_ensign.proto.mimetype.v1beta1 import mimetype_pb2

#: Size of the user payload of every benchmark event.
PAYLOAD_BYTES = 200
_LOCAL_ID_PLACEHOLDER = b"\xee" * 16


def payload(index: int = 0, size: int = PAYLOAD_BYTES) -> bytes:
    """A JSON object of exactly ``size`` bytes (a reading with padding)."""
    head = json.dumps({"sensor": f"bench-{index:08d}", "temp": 21.5, "units": "celsius"})
    pad = size - len(head) - len('"pad": "", ')
    body = {"pad": "x" * max(0, pad)}
    text = json.dumps({**body, **json.loads(head)})
    return text.encode()[:size].ljust(size, b" ")


def event_bytes(size: int = PAYLOAD_BYTES) -> bytes:
    """A serialized ``Event`` as an SDK would send it (JSON, typed, with created)."""
    created = Timestamp()
    created.FromNanoseconds(time.time_ns())
    event = event_pb2.Event(
        data=payload(0, size),
        mimetype=mimetype_pb2.MIME.APPLICATION_JSON,
        type=event_pb2.Type(name="BenchReading", major_version=1),
        created=created,
    )
    return event.SerializeToString()


def varint(value: int) -> bytes:
    """Protobuf base-128 varint."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def local_id(index: int) -> bytes:
    """The 16-byte local id of event ``index`` (unique within a run)."""
    return index.to_bytes(16, "big")


@dataclass(frozen=True)
class Frames:
    """Templates for one topic: single-event requests, batch requests, and the replies."""

    topic_id: bytes
    event: bytes

    @property
    def _wrapper_parts(self) -> tuple[bytes, bytes]:
        wrapper = event_pb2.EventWrapper(
            topic_id=self.topic_id, event=self.event, local_id=_LOCAL_ID_PLACEHOLDER
        ).SerializeToString()
        head, _, tail = wrapper.partition(_LOCAL_ID_PLACEHOLDER)
        return head, tail

    def splicer(self) -> EventSplicer:
        """A fast builder of per-event frames."""
        head, tail = self._wrapper_parts
        return EventSplicer(head, tail)

    def single_request_size(self) -> int:
        """Bytes of one ``PublisherRequest{event}``."""
        return len(self.splicer().single(0))

    def ack_reply(self) -> bytes:
        """A ``PublisherReply{ack}`` as the server would send it."""
        return ack_reply_bytes()

    def batch_reply(self, count: int) -> bytes:
        """A ``PublisherReply{replies}`` with ``count`` acks."""
        acks = [_ack(index) for index in range(count)]
        return ensign_pb2.PublisherReply(
            replies=ensign_pb2.ReplyBatch(acks=acks)
        ).SerializeToString()


def _ack(index: int) -> ensign_pb2.Ack:
    committed = Timestamp()
    committed.FromNanoseconds(time.time_ns())
    return ensign_pb2.Ack(id=local_id(index + 1), committed=committed)


def ack_reply_bytes() -> bytes:
    """One ``PublisherReply{ack}`` of the size the server sends."""
    return ensign_pb2.PublisherReply(ack=_ack(0)).SerializeToString()


class EventSplicer:
    """Builds serialized requests by splicing local ids into a wrapper template."""

    # PublisherRequest.event = 1 (LEN), .events = 100 (LEN); EventBatch.events = 1 (LEN)
    _EVENT_TAG = b"\x0a"
    _BATCH_TAG = varint((100 << 3) | 2)

    def __init__(self, head: bytes, tail: bytes) -> None:
        self.head = head
        self.tail = tail
        self.wrapper_len = varint(len(head) + 16 + len(tail))

    def wrapper(self, index: int) -> bytes:
        """One serialized ``EventWrapper`` with local id ``index``."""
        return self.head + local_id(index) + self.tail

    def single(self, index: int) -> bytes:
        """``PublisherRequest{event: wrapper(index)}``."""
        return self._EVENT_TAG + self.wrapper_len + self.wrapper(index)

    def batch(self, start: int, count: int) -> bytes:
        """``PublisherRequest{events: EventBatch}`` of ids ``start`` … ``start+count-1``."""
        tag, size, head, tail = self._EVENT_TAG, self.wrapper_len, self.head, self.tail
        body = b"".join(tag + size + head + local_id(i) + tail for i in range(start, start + count))
        return self._BATCH_TAG + varint(len(body)) + body


def count_outcomes(reply: bytes) -> tuple[int, int]:
    """Parse a ``PublisherReply``: (acks, nacks) it carries; (0, 0) for anything else."""
    message = ensign_pb2.PublisherReply.FromString(reply)
    kind = message.WhichOneof("embed")
    if kind == "ack":
        return 1, 0
    if kind == "nack":
        return 0, 1
    if kind == "replies":
        return len(message.replies.acks), len(message.replies.nacks)
    return 0, 0
