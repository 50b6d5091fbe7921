"""Wires the handlers into a grpc.aio server as ``ensign.v1beta1.Ensign``.

Responses may be pre-encoded bytes (acks and events on the hot paths), so the service is
registered with a serializer that passes bytes through unchanged.
"""

from __future__ import annotations

from typing import Any

import grpc

from django_ensign.proto.api.v1beta1 import ensign_pb2, query_pb2, topic_pb2
from django_ensign.server.groups import GroupManager
from django_ensign.server.publish import PublishStream, parse_request
from django_ensign.server.rpcs import Rpcs
from django_ensign.server.state import ServerState
from django_ensign.server.streamcall import Context
from django_ensign.server.subscribe import SubscribeStream

SERVICE = "ensign.v1beta1.Ensign"


#: What grpc-go (the real server) answers when request bytes do not parse.
UNMARSHAL_ERROR = "grpc: error unmarshalling request"


class _Undecodable:
    """Stands in for a unary request whose bytes did not parse."""


_UNDECODABLE = _Undecodable()


def _lenient(parse: Any) -> Any:
    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw)
        except Exception:
            return _UNDECODABLE

    return deserialize


def _guarded(fn: Any) -> Any:
    """Answer undecodable requests with INTERNAL, as grpc-go does, before anything else."""

    async def call(request: Any, context: Context) -> Any:
        if request is _UNDECODABLE:
            await context.abort(grpc.StatusCode.INTERNAL, UNMARSHAL_ERROR)
        return await fn(request, context)

    return call


def _guarded_stream(fn: Any) -> Any:
    async def call(request: Any, context: Context) -> Any:
        if request is _UNDECODABLE:
            await context.abort(grpc.StatusCode.INTERNAL, UNMARSHAL_ERROR)
        async for item in fn(request, context):
            yield item

    return call


def _serialize(message: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    return bytes(message.SerializeToString())


class EnsignService:
    """Holds the shared state and creates a stream object per streaming call."""

    def __init__(self, state: ServerState, groups: GroupManager) -> None:
        self.state = state
        self.groups = groups
        self.rpcs = Rpcs(state, groups)

    async def publish(self, requests: Any, context: Context) -> None:
        await PublishStream(self.state, context).run(requests)

    async def subscribe(self, requests: Any, context: Context) -> None:
        await SubscribeStream(self.state, self.groups, context).run(requests)

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The generic handler to add to a grpc.aio server."""
        pb, tp, qp = ensign_pb2, topic_pb2, query_pb2
        rpcs = self.rpcs

        def unary(fn: Any, request: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                _guarded(fn),
                request_deserializer=_lenient(request.FromString),
                response_serializer=_serialize,
            )

        handlers = {
            "Publish": grpc.stream_stream_rpc_method_handler(
                self.publish,
                request_deserializer=parse_request,
                response_serializer=_serialize,
            ),
            "Subscribe": grpc.stream_stream_rpc_method_handler(
                self.subscribe,
                request_deserializer=pb.SubscribeRequest.FromString,
                response_serializer=_serialize,
            ),
            "EnSQL": grpc.unary_stream_rpc_method_handler(
                _guarded_stream(rpcs.EnSQL),
                request_deserializer=_lenient(qp.Query.FromString),
                response_serializer=_serialize,
            ),
            "Explain": unary(rpcs.Explain, qp.Query),
            "ListTopics": unary(rpcs.ListTopics, pb.PageInfo),
            "CreateTopic": unary(rpcs.CreateTopic, tp.Topic),
            "RetrieveTopic": unary(rpcs.RetrieveTopic, tp.Topic),
            "DeleteTopic": unary(rpcs.DeleteTopic, tp.TopicMod),
            "TopicNames": unary(rpcs.TopicNames, pb.PageInfo),
            "TopicExists": unary(rpcs.TopicExists, tp.TopicName),
            "SetTopicPolicy": unary(rpcs.SetTopicPolicy, tp.TopicPolicy),
            "Info": unary(rpcs.Info, pb.InfoRequest),
            "Status": unary(rpcs.Status, pb.HealthCheck),
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)
