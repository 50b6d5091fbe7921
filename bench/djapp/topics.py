"""Topic names of the benchmarks' Django app (importable without Django set up)."""

from __future__ import annotations

#: Topic of the no-op handler.
NOOP_TOPIC = "bench-dispatch-noop"
#: Topic of the handler that writes one row.
WRITE_TOPIC = "bench-dispatch-write"
#: Topic signal-written outbox rows of ``Reading`` go to.
READINGS_TOPIC = "bench-readings"
