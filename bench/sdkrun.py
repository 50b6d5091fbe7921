"""Run ``bench/sdk_script.py`` for one SDK against a server and read its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import official_sdk, procs, stats
from tests.support.server import EmbeddedServer

SCRIPT = procs.ROOT / "bench" / "sdk_script.py"


@dataclass(frozen=True)
class SdkRun:
    """What the script reported."""

    raw: dict[str, Any]

    @property
    def answered(self) -> int:
        """Events acked or nacked."""
        return int(self.raw["acked"]) + int(self.raw["nacked"])

    @property
    def rate(self) -> float:
        """Events answered per second, first publish to last outcome."""
        return stats.rate(self.answered, float(self.raw["seconds"]))

    @property
    def lost(self) -> int:
        """Events that never got an outcome."""
        return int(self.raw["events"]) - self.answered

    def rss(self) -> list[float]:
        """RSS samples in MiB over the run (start … end)."""
        return [float(x) for x in self.raw["rss_mib"]]


def run(
    server: EmbeddedServer,
    sdk: str,
    events: int,
    topic: str,
    *,
    batch: bool = True,
    timeout: float = 600.0,
) -> SdkRun:
    """Publish ``events`` events with ``sdk`` ("ours" or "official") in a child process."""
    interpreter: Path | str = official_sdk.python() if sdk == "official" else sys.executable
    args = [str(interpreter), str(SCRIPT), "--sdk", sdk, "--events", str(events)]
    args += ["--topic", topic, "--timeout", str(timeout)]
    if not batch:
        args.append("--no-batch")
    env = {**os.environ, **server.client_env()}
    if sdk == "ours":
        env["PYTHONPATH"] = str(procs.ROOT)
    else:
        env.pop("PYTHONPATH", None)
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout + 120, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return SdkRun(json.loads(line.removeprefix("RESULT ")))
    raise RuntimeError(f"{sdk} SDK run failed ({done.returncode}):\n{done.stderr[-3000:]}")
