"""The official Ensign SDK (pyensign) in a virtualenv of its own, created on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import procs

#: The release the comparison is made with.
PACKAGE = "pyensign==0.12.1b0"
VENV = Path(os.environ.get("BENCH_PYENSIGN_VENV", procs.ROOT / "var" / "pyensign-venv"))


def python() -> Path:
    """The venv's interpreter; creates the venv and installs pyensign when missing."""
    interpreter = VENV / "bin" / "python"
    if not _has_pyensign(interpreter):
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(interpreter), "-m", "pip", "install", "--quiet", PACKAGE], check=True)
    return interpreter


def versions() -> str:
    """pyensign's version and the grpcio/protobuf it runs on in its venv."""
    code = (
        "import importlib.metadata as m;"
        "print(', '.join(f'{p} {m.version(p)}' for p in ('pyensign', 'grpcio', 'protobuf')))"
    )
    done = subprocess.run([str(python()), "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _has_pyensign(interpreter: Path) -> bool:
    if not interpreter.exists():
        return False
    done = subprocess.run(
        [str(interpreter), "-c", "import pyensign"], capture_output=True, check=False
    )
    return done.returncode == 0
