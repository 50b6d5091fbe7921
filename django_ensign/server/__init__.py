"""The embedded Ensign-compatible server (``python -m django_ensign.server``); no Django here.

``run(data_dir, host, port, auth_port)`` serves gRPC (``ensign.v1beta1.Ensign`` and
``grpc.health.v1.Health``) and the HTTP auth service until SIGINT/SIGTERM.

What it does where PROTOCOL.md leaves room ("**We**"):

- Storage: one SQLite database in WAL mode (``DIR/ensign.db``); one writer thread
  group-commits every queued event in one transaction with ``synchronous=FULL``; acks go
  out only after that commit. Each event gets a per-topic offset (1, 2, 3 …) and a stored
  ``committed`` time.
- Deduplication (SetTopicPolicy): NONE, STRICT (data, metadata, mimetype, type), DATAGRAM
  (data), KEY_GROUPED (the policy's metadata keys, then data) and UNIQUE_KEY (the keys) apply
  online to events published after the change: a duplicate is still stored and acked, with
  ``is_duplicate`` and ``duplicate_id`` (the first event's id) set; EnSQL skips duplicates
  unless ``include_duplicates``; there is no re-scan of older events. UNIQUE_FIELD and any
  sharding change answer UNIMPLEMENTED.
- Subscribe without a group is a live tail that is back-pressured, never skipping events.
  With a group (by id, else by name) the acked position per topic is kept durably
  (written within ~50 ms of the ack, so a crash may redeliver a few acked events); a new
  stream resumes after it (the first time from offset 1); nacked events, events not acked
  within the group's ``delivery_timeout`` (default 30 s) and events in flight on a stream
  that ends are delivered again; at most ``Subscription.window`` (default 1024) events are
  in flight per stream. ``query`` replays the matching stored events, then continues live
  with the same WHERE.
- EnSQL evaluates WHERE over metadata keys, ``type``/``type.name``, ``type.version`` and
  ``mimetype``; LIMIT is exact; projections are accepted and ignored; ``params`` are ignored.
- Batch extension: StreamReady.batch advertises max_events/max_bytes; EventBatch is acked
  with ReplyBatch; Subscription.batch_size > 0 gets EventBatch replies and AckBatch acks.
"""

from __future__ import annotations

from django_ensign.server.app import create_key, run, serve

__all__ = ["create_key", "run", "serve"]
