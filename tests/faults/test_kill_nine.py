"""kill -9 of the server, the relay and the subscriber at random points of a running pipeline.

Outbox rows → relay process → server process → ``ensign_subscribe`` process → handler.
Each iteration writes rows, waits for a random point of progress, and SIGKILLs one of
the three (chosen at random), then starts it again. After every server restart each row
the database calls acked must be on the server; at the end every row is acked, stored and
applied exactly once.
"""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from django_ensign.models import OutboxEvent
from tests.faults.support import (
    APPLIED_TOPIC,
    Ledger,
    acked_but_not_stored,
    acked_count,
    applied_count,
    check_outbox_pipeline,
    pipeline_state,
    wait_for,
    write_rows,
)
from tests.outbox.support import start_relay, stop
from tests.subscriptions.conftest import SubscriberProcess, subprocess_env
from tests.support.server import EmbeddedServer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres_only"),
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

ITERATIONS = 6
ROWS_PER_ITERATION = 40
VICTIMS = ("server", "relay", "subscriber")


class Pipeline:
    """The three processes of one test, restartable one at a time."""

    def __init__(self, server: EmbeddedServer, logs: Path) -> None:
        self.server = server
        self.logs = logs
        self.relay: subprocess.Popen[bytes] | None = None
        self.subscriber: SubscriberProcess | None = None

    def start_relay(self) -> None:
        self.relay = start_relay(
            self.server, "--batch-size", "16", log=self.logs / "relay.log", TEST_RELAY_LEASE="2"
        )

    def start_subscriber(self) -> None:
        self.subscriber = SubscriberProcess(
            args=[APPLIED_TOPIC, "--group", "faults", "--concurrency", "4", "-v", "0"],
            env=subprocess_env(self.server),
            log=self.logs / "subscriber.log",
        ).start()

    def kill(self, victim: str) -> None:
        if victim == "server":
            self.server.kill()
        elif victim == "relay":
            assert self.relay is not None
            self.relay.kill()
            self.relay.wait()
        else:
            assert self.subscriber is not None
            self.subscriber.kill()

    def restart(self, victim: str) -> None:
        if victim == "server":
            self.server.start()
        elif victim == "relay":
            self.start_relay()
        else:
            self.start_subscriber()

    def stop(self) -> tuple[int, int]:
        relay_code = stop(self.relay) if self.relay else 0
        sub_code = self.subscriber.terminate() if self.subscriber else 0
        return relay_code, sub_code

    def kill_all(self) -> None:
        if self.relay and self.relay.poll() is None:
            self.relay.kill()
            self.relay.wait()
        if self.subscriber:
            self.subscriber.kill()

    def logs_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("*.log"))
        )


def progress(victim: str) -> int:
    """The work the victim's death can interrupt: events applied, or rows acked."""
    return applied_count() if victim == "subscriber" else acked_count(APPLIED_TOPIC)


def reached(victim: str, target: int) -> bool:
    return progress(victim) >= target


def test_kill_9_anywhere_in_the_pipeline_loses_and_duplicates_nothing(
    fresh_server: EmbeddedServer, tmp_path: Path, fault_rng: random.Random, ledger: Ledger
) -> None:
    pipeline = Pipeline(fresh_server, tmp_path)
    rows: list[OutboxEvent] = []
    try:
        pipeline.start_relay()
        pipeline.start_subscriber()
        # Each process dies at least once; the order and the moments are random.
        victims = fault_rng.sample(VICTIMS * (ITERATIONS // len(VICTIMS)), ITERATIONS)
        for iteration, victim in enumerate(victims):
            began = time.monotonic()
            done_before = progress(victim)
            rows += write_rows(APPLIED_TOPIC, ROWS_PER_ITERATION, start=len(rows))
            # A random point between what was done and the end of this iteration's work.
            target = fault_rng.randint(done_before, max(done_before, len(rows) - 1))
            wait_for(functools.partial(reached, victim, target), 60, f"{victim} at {target}")
            pipeline.kill(victim)
            ledger.fault(f"kill -9 {victim}")
            print(
                f"iteration {iteration}: killed the {victim} at {target}/{len(rows)}"
                f" after {time.monotonic() - began:.1f}s"
            )
            pipeline.restart(victim)
            if victim == "server":
                assert acked_but_not_stored(fresh_server, APPLIED_TOPIC) == []
            ledger.iterations += 1
        began = time.monotonic()
        wait_for(lambda: acked_count(APPLIED_TOPIC) == len(rows), 90, "every row acked")
        print(f"all acked after {time.monotonic() - began:.1f}s")
        wait_for(lambda: applied_count() >= len(rows), 90, "every event applied")
        print(f"all applied after {time.monotonic() - began:.1f}s")
        codes = pipeline.stop()
    except BaseException:
        pipeline.kill_all()
        print(pipeline_state(), pipeline.logs_text())
        raise
    # A process restarted just before the end may get SIGTERM while Django is still
    # starting, before its handler is installed: it then dies by the signal, which
    # loses nothing (the verdict below checks that). Any other exit is a failure.
    assert all(code in (0, -signal.SIGTERM) for code in codes), (codes, pipeline.logs_text())
    verdict = check_outbox_pipeline(ledger, fresh_server, APPLIED_TOPIC, rows, handled=True)
    verdict.assert_clean()
