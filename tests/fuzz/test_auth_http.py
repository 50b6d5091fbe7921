"""Random bodies for the HTTP auth service (PROTOCOL.md §2): a documented answer every time.

``/v1/authenticate`` and ``/v1/refresh`` answer 200 with tokens, 400 ``missing
credentials`` / ``could not parse request``, or 403 ``invalid credentials`` — whatever the
body holds — and the service keeps answering afterwards.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ, FuzzTarget
from tests.fuzz.strategies import TEXT

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
FIELDS = st.sampled_from(["client_id", "client_secret", "refresh_token", "org_id"])
BODIES = st.one_of(
    st.dictionaries(st.one_of(FIELDS, TEXT), JSON_VALUES, max_size=4).map(
        lambda d: json.dumps(d).encode()
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)
ERRORS = {
    400: {"missing credentials", "could not parse request"},
    403: {"invalid credentials"},
}


def post(target: FuzzTarget, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", target.server.auth_port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_random_bodies_get_documented_answers(target: FuzzTarget) -> None:
    @FUZZ
    @given(
        st.sampled_from(["/v1/authenticate", "/v1/refresh"]),
        BODIES,
        st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"]),
    )
    def example(path: str, body: bytes, content_type: str) -> None:
        status, payload = post(target, path, body, content_type)
        if status == 200:
            assert {"access_token", "refresh_token", "last_login"} <= set(payload)
        else:
            assert payload == {"success": False, "error": payload.get("error")}
            assert payload["error"] in ERRORS.get(status, set()), (status, payload)

    example()
    creds = target.server.credentials
    body = json.dumps({"client_id": creds.client_id, "client_secret": creds.client_secret})
    status, payload = post(target, "/v1/authenticate", body.encode(), "application/json")
    assert status == 200
    assert payload["access_token"]
