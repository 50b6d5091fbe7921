"""WAL checkpoints on their own thread, so the event writer never waits for one.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold: the
writer copies the WAL into the database file and fsyncs it before it can start the next
group commit. Here the writer's connection has automatic checkpoints turned off and
reports what it wrote; a second connection runs PASSIVE checkpoints beside it. Durability
is unchanged: every commit is still fsynced in the WAL before its events are acked.

A PASSIVE checkpoint copies the frames that exist when it starts. Under a steady stream
of commits it may never catch the WAL's end, and SQLite only rewinds the WAL once it has
been copied completely, so past ``WAL_CAP_FRAMES`` the writer runs one checkpoint itself
(with nothing appended meanwhile it completes) and its next transaction rewinds the WAL.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Bytes of event rows committed between background checkpoints, near SQLite's default
#: of a checkpoint every 1,000 pages of 4 KiB.
CHECKPOINT_BYTES = 2 << 20
#: WAL frames past which the writer checkpoints itself so that the WAL can be rewound.
WAL_CAP_FRAMES = 16_384

_PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"


class Checkpointer:
    """Runs PASSIVE checkpoints on a thread of its own when the writer has written enough."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        checkpoint_bytes: int = CHECKPOINT_BYTES,
        wal_cap_frames: int = WAL_CAP_FRAMES,
    ) -> None:
        self._connect = connect
        self._checkpoint_bytes = checkpoint_bytes
        self._wal_cap_frames = wal_cap_frames
        self._due = threading.Event()
        self._stopping = False
        self._pending = 0
        self._thread: threading.Thread | None = None
        #: Set when the WAL has grown past ``wal_cap_frames``; the writer clears it.
        self.wal_full = False

    def start(self, writer: sqlite3.Connection) -> None:
        """Turn off ``writer``'s automatic checkpoints and start checkpointing beside it."""
        writer.execute("PRAGMA wal_autocheckpoint=0")
        self._thread = threading.Thread(
            target=self._run, args=(self._connect(),), name="ensign-checkpoint", daemon=True
        )
        self._thread.start()

    def written(self, nbytes: int) -> None:
        """Note ``nbytes`` of committed rows (writer thread)."""
        self._pending += nbytes
        if self._pending >= self._checkpoint_bytes:
            self._pending = 0
            self._due.set()

    def catch_up(self, writer: sqlite3.Connection) -> None:
        """Checkpoint on the writer's connection, between its transactions (writer thread)."""
        self.wal_full = False
        try:
            writer.execute(_PASSIVE).fetchone()
        except sqlite3.Error:
            log.warning("checkpoint on the writer failed", exc_info=True)

    def close(self) -> None:
        """Stop the checkpoint thread (after the writer has stopped)."""
        self._stopping = True
        self._due.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopping:
                    return
                try:
                    _, frames, _ = conn.execute(_PASSIVE).fetchone()
                except sqlite3.Error:
                    # The writer's commits do not depend on checkpoints; a disk that
                    # refuses them will refuse the commits too, and those are nacked.
                    log.warning("background checkpoint failed", exc_info=True)
                    continue
                if frames >= self._wal_cap_frames:
                    self.wal_full = True
        finally:
            conn.close()
