"""The example project as configured: its checks pass and its migrations match its models."""

from __future__ import annotations

from pathlib import Path

from tests.example.conftest import ExampleProject, example_env
from tests.support.server import EmbeddedServer


def test_example_project_passes_its_checks_and_has_every_migration(
    ensign_server: EmbeddedServer, tmp_path: Path
) -> None:
    project = ExampleProject(example_env(ensign_server, f"sqlite:///{tmp_path / 'db.sqlite3'}"))
    assert "no issues" in project.manage("check").stdout
    project.manage("makemigrations", "--check", "--dry-run")
