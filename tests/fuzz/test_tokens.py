"""Random and forged bearer tokens (PROTOCOL.md §2): always UNAUTHENTICATED, never more.

Noise, the real token bent one character at a time, unsigned tokens, tokens signed by
another key under the server's key id, and HS256 tokens keyed with the server's public
key all get ``UNAUTHENTICATED "invalid credentials"`` on unary calls and streams alike;
``Status`` needs no token at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from django_ensign.proto.api.v1beta1 import ensign_pb2
from tests.fuzz.conftest import FUZZ, INVALID_CREDENTIALS, MISSING_CREDENTIALS, FuzzTarget, Status

#: What gRPC lets a client put in an ASCII metadata value.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: Any) -> str:
    return _b64(json.dumps(value).encode())


def sign_rs256(header: dict[str, Any], claims: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    """A JWT signed by hand (PyJWT would refuse some of the odd claims on purpose here)."""
    head = _segment({**header, "alg": "RS256"})
    body = _segment(claims)
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(signature)}"


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


CLAIM_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False),
    HEADER_TEXT,
    st.lists(HEADER_TEXT, max_size=3),
    st.dictionaries(HEADER_TEXT, HEADER_TEXT, max_size=2),
)
CLAIM_CHANGES = st.dictionaries(
    st.sampled_from(["permissions", "project", "sub", "aud", "iss", "exp", "nbf", "iat"]),
    CLAIM_VALUES,
    min_size=1,
    max_size=3,
)


def forged_tokens(real: str, server_key: rsa.RSAPrivateKey) -> st.SearchStrategy[str]:
    """Tokens an attacker or a broken client could send, built from the real one."""
    header, claims = _parts(real)
    public_pem = server_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = ".".join([_segment({**header, "alg": "none"}), _segment(claims), ""])

    def bend(data: tuple[int, str]) -> str:
        index, char = data
        index %= len(real)
        return real[:index] + char + real[index + 1 :]

    def other_key(changes: dict[str, Any]) -> str:
        return sign_rs256(header, {**claims, **changes}, OTHER_KEY)

    def hs256(changes: dict[str, Any]) -> str:
        # The classic algorithm confusion: the server's public key used as an HMAC secret.
        head = _segment({**header, "alg": "HS256"})
        body = _segment({**claims, **changes})
        mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(mac)}"

    return st.one_of(
        st.just(unsigned),
        st.tuples(st.integers(0, 10**6), st.sampled_from("ABCxyz019-_.="))
        .map(bend)
        .filter(lambda t: t != real),
        st.just({}).map(other_key),
        CLAIM_CHANGES.map(other_key),
        st.just({}).map(hs256),
        CLAIM_CHANGES.map(hs256),
        HEADER_TEXT,
    )


def invalid_headers(target: FuzzTarget) -> st.SearchStrategy[str]:
    """``authorization`` values that must not verify."""
    bearer = forged_tokens(target.token, _load_key(target)).map(lambda t: f"Bearer {t}")
    scheme_noise = st.one_of(
        HEADER_TEXT.filter(lambda v: not v.startswith("Bearer ")),
        st.just(f"bearer {target.token}"),
        st.just(f"Bearer  {target.token}"),
        st.just(f"Token {target.token}"),
        st.just(target.token),
    )
    return st.one_of(bearer, scheme_noise)


def _load_key(target: FuzzTarget) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(
        (target.server.data_dir / "signing-key.pem").read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def test_forged_and_random_tokens_are_unauthenticated_everywhere(target: FuzzTarget) -> None:
    list_topics = ensign_pb2.PageInfo().SerializeToString()

    @FUZZ
    @given(invalid_headers(target))
    def example(value: str) -> None:
        md = (("authorization", value),)
        assert target.unary("ListTopics", list_topics, metadata=md)[:2] == INVALID_CREDENTIALS
        for method in ("Publish", "Subscribe"):
            code, details, replies = target.stream(method, [], metadata=md)
            assert (code, details, replies) == (*INVALID_CREDENTIALS, [])
        # Status needs no credentials and ignores bad ones.
        assert target.unary("Status", b"", metadata=md)[0] == Status.OK

    example()
    target.assert_still_serving()


def test_odd_claims_signed_with_the_servers_key_never_break_a_call(target: FuzzTarget) -> None:
    header, claims = _parts(target.token)
    key = _load_key(target)

    @FUZZ
    @given(CLAIM_CHANGES)
    def example(changes: dict[str, Any]) -> None:
        token = sign_rs256(header, {**claims, **changes}, key)
        md = (("authorization", f"Bearer {token}"),)
        code, details, _ = target.unary("ListTopics", b"", metadata=md)
        assert (code, details) in {
            (Status.OK, ""),
            INVALID_CREDENTIALS,
            (Status.PERMISSION_DENIED, "not authorized to perform this action"),
        }

    example()
    target.assert_still_serving()


def test_a_missing_header_is_missing_credentials(target: FuzzTarget) -> None:
    code, details, _ = target.unary("ListTopics", b"", metadata=())
    assert (code, details) == MISSING_CREDENTIALS
    assert target.stream("Subscribe", [], metadata=())[:2] == MISSING_CREDENTIALS
