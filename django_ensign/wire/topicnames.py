"""What Ensign accepts as a topic name: one rule for the server, the outbox and the checks."""

from __future__ import annotations

import re

#: A letter, then letters, digits, '.', '-' or '_' (matched whole: no trailing newline).
NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9.\-_]*")
MAX_BYTES = 512


def is_valid(name: object) -> bool:
    """Whether ``name`` is a string Ensign takes as a topic name."""
    return (
        isinstance(name, str)
        and NAME.fullmatch(name) is not None
        and len(name.encode("utf-8")) <= MAX_BYTES
    )
