"""The generated protobuf code matches protos/ and keeps Ensign's wire numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2
from django_ensign.proto.mimetype.v1beta1 import mimetype_pb2

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_matches_protos() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"run `make protos`:\n{result.stdout}{result.stderr}"


def test_service_path_is_ensigns() -> None:
    service = ensign_pb2.DESCRIPTOR.services_by_name["Ensign"]
    assert service.full_name == "ensign.v1beta1.Ensign"
    assert {m.name for m in service.methods} >= {"Publish", "Subscribe", "EnSQL", "Status"}


def test_event_wrapper_field_numbers_match_ensign() -> None:
    fields = {f.name: f.number for f in event_pb2.EventWrapper.DESCRIPTOR.fields}
    assert fields["event"] == 9
    assert fields["committed"] == 15
    assert fields["local_id"] == 16


def test_batch_extension_fields_are_clear_of_ensigns() -> None:
    ready = {f.name: f.number for f in ensign_pb2.StreamReady.DESCRIPTOR.fields}
    assert ready["batch"] >= 100
    request = {f.name: f.number for f in ensign_pb2.PublisherRequest.DESCRIPTOR.fields}
    assert request["events"] >= 100


def test_subscription_start_is_an_extension_whose_default_is_plain_ensigns() -> None:
    fields = {f.name: f.number for f in ensign_pb2.Subscription.DESCRIPTOR.fields}
    assert fields["start"] >= 100
    # A client that does not send it gets what it always got: a new group starts earliest.
    assert ensign_pb2.Subscription().start == ensign_pb2.Subscription.EARLIEST == 0


def test_extension_fields_are_unknown_to_plain_ensign_parsers() -> None:
    # An Ensign peer built without our fields must still parse the message;
    # an empty message type stands in for its view of StreamReady's extension.
    ready = ensign_pb2.StreamReady(client_id="c", batch=ensign_pb2.BatchExtension(max_events=7))
    plain = ensign_pb2.OpenStream()
    plain.ParseFromString(ready.SerializeToString())
    assert plain.client_id == "c"


def test_json_mimetype_aliases_share_a_value() -> None:
    assert mimetype_pb2.APPLICATION_JSON == mimetype_pb2.APPLICATION_JSON_UTF8 == 50
