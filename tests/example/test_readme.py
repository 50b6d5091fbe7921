"""The README's promises that can drift: the two commands, and every setting with its default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from django_ensign.conf import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SETTING_ROW = re.compile(r"^\| `(ENSIGN_[A-Z_]+)` \| (.+?) \| .+\|$", re.MULTILINE)


class _Defaults(Settings):
    """The settings object with nothing configured: every property returns its default."""

    def _get(self, name: str, default: Any) -> Any:
        return default


def _documented() -> dict[str, str]:
    return dict(SETTING_ROW.findall(README))


def _as_written(value: Any) -> str:
    return f'`"{value}"`' if isinstance(value, str) else f"`{value!r}`"


SETTINGS = sorted(name for name, value in vars(Settings).items() if isinstance(value, property))


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block
    assert "make test" in first_block


def test_readme_documents_only_settings_that_exist() -> None:
    assert sorted(_documented()) == sorted(f"ENSIGN_{name}" for name in SETTINGS)


@pytest.mark.parametrize("name", SETTINGS)
def test_readme_gives_each_settings_default(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("ENDPOINT", "AUTH_URL", "INSECURE", "CLIENT_ID", "CLIENT_SECRET"):
        monkeypatch.delenv(f"ENSIGN_{variable}", raising=False)
    written = _documented()[f"ENSIGN_{name}"]
    if not written.startswith("`"):
        return  # a computed default, described in words (e.g. the project's package name)
    assert written == _as_written(getattr(_Defaults(), name))
