"""``python -m bench.startline DIR COMMAND [ARGS...]``: a management command that starts on cue.

Importing Django, the app and grpc takes a relay process 0.4 to 0.47 s of CPU. Relays
started together would spend it while the first of them is already draining, on a machine
with two cores, so the drain rate of N relays would measure their start-up too. Each
process here does that work first, says so with ``DIR/ready-<pid>``, and runs ``COMMAND``
once ``DIR/go`` exists (:func:`release` makes it when every process is ready). It then
writes the CPU seconds the command took, all its threads together, to ``DIR/cpu-<pid>``
(:func:`command_cpu` adds them up).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: How often a waiting process looks for the cue, in seconds.
POLL = 0.002


def release(directory: Path, children: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    """Wait until each child is ready, then let them all start (RuntimeError if one dies)."""
    deadline = time.monotonic() + timeout
    while len(list(directory.glob("ready-*"))) < len(children):
        exited = [child.returncode for child in children if child.poll() is not None]
        if exited:
            raise RuntimeError(f"a process exited with {exited} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes not ready after {timeout:.0f} s")
        time.sleep(0.01)
    (directory / "go").touch()


def command_cpu(directory: Path, processes: int) -> float | None:
    """CPU seconds the commands of the ``processes`` started in ``directory`` took, together.

    None unless every one of them wrote its reading (a process killed before its command
    returned writes none).
    """
    readings = [float(path.read_text()) for path in directory.glob("cpu-*")]
    return sum(readings) if len(readings) == processes else None


def main(argv: list[str]) -> int:
    """Set Django up, load the command, wait for the cue, run it."""
    directory, name, *args = argv
    import django
    from django.core.management import call_command, get_commands, load_command_class

    django.setup()
    command = load_command_class(get_commands()[name], name)
    from django.db import connections

    import django_ensign.client  # the relay's heaviest imports (grpc)
    import django_ensign.relay

    if connections["default"].vendor == "postgresql":
        # The relay imports this (and psycopg with it) once it runs, the floor when it is
        # loaded: imported here, before the cue, neither counts it in its command's CPU.
        import django_ensign.pgasync  # noqa: F401

    cue = Path(directory)
    (cue / f"ready-{os.getpid()}").touch()
    while not (cue / "go").exists():
        time.sleep(POLL)
    started = time.process_time()
    try:
        call_command(command, *args)
    finally:
        (cue / f"cpu-{os.getpid()}").write_text(repr(time.process_time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
