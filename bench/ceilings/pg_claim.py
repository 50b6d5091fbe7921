"""Ceiling: a raw PostgreSQL ``FOR UPDATE SKIP LOCKED`` claim + ``UPDATE`` loop (psycopg 3).

A scratch table shaped like the outbox (payload, status, lease, attempts, acked time) holds
the same number of ~200-byte rows as the drain benchmark; each worker claims ``batch``
rows in one short transaction (lock, mark in flight under a lease token) and records them
acked in a second, guarded by the token — the relay's database work with no network.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from dataclasses import dataclass
from typing import Any

from bench import frames, pg, pgcost

#: Rows per claim (the relay's default OUTBOX_BATCH_SIZE).
BATCH = 500
TABLE = "bench_claim_ceiling"
#: The scratch database the ceiling creates and drops.
DATABASE = f"{pg.BENCH_DB}_ceiling"

_SETUP = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    data bytea NOT NULL,
    status smallint NOT NULL DEFAULT 0,
    lease_token uuid,
    lease_expires_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    acked_at timestamptz,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX {TABLE}_pending ON {TABLE} (id) WHERE status = 0;
"""

_CLAIM = f"""
UPDATE {TABLE} SET status = 1, lease_token = %(token)s,
       lease_expires_at = now() + interval '60 seconds', attempts = attempts + 1
WHERE id IN (
    SELECT id FROM {TABLE} WHERE status = 0 ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING id, topic, data
"""

_ACK = f"""
UPDATE {TABLE} SET status = 2, acked_at = now(), lease_token = NULL
WHERE id = ANY(%(ids)s) AND lease_token = %(token)s AND status = 1
"""


@dataclass(frozen=True)
class ClaimRun(pgcost.Drained):
    """Rows claimed and recorded, seconds and PostgreSQL's cost per row, with ``workers``."""

    workers: int


def _fill(rows: int) -> None:
    data = frames.payload()
    with pg.connect(DATABASE) as conn:
        conn.execute(_SETUP)
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} (topic, data) FROM STDIN") as copy:
            for _ in range(rows):
                copy.write_row(("bench", data))
        conn.execute(f"ANALYZE {TABLE}")


def _worker(conn: Any, batch: int, counts: list[int]) -> None:
    while True:
        token = uuid.uuid4()
        with conn.transaction():
            claimed = conn.execute(_CLAIM, {"token": token, "limit": batch}).fetchall()
        if not claimed:
            return
        with conn.transaction():
            conn.execute(_ACK, {"ids": [row[0] for row in claimed], "token": token})
        counts.append(len(claimed))


def measure(rows: int, workers: int = 1, batch: int = BATCH) -> ClaimRun:
    """Claim and record ``rows`` rows with ``workers`` concurrent connections."""
    _fill(rows)
    connect = functools.partial(pg.connect, DATABASE)
    with pgcost.connections(workers, connect) as conns, connect() as monitor:
        done = pgcost.drain(
            conns, monitor, TABLE, lambda conn, counts: _worker(conn, batch, counts)
        )
        monitor.execute(f"DROP TABLE {TABLE}")
    return ClaimRun(**dataclasses.asdict(done), workers=workers)
