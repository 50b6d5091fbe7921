"""django-ensign: publish and consume Ensign events from Django without losing one."""

from __future__ import annotations

__version__ = "0.1.0"
