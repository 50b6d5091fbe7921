"""The default payload of a published model: its concrete fields, as the database holds them."""

from __future__ import annotations

from typing import Any

from django.db import models


def model_fields(instance: models.Model) -> dict[str, Any]:
    """Every concrete field by attribute name (``author_id``), in field order.

    A field the instance does not hold as a value (deferred by ``only()``/``defer()``,
    or saved as an expression such as ``F("stock") - 1``) is read back in one query.
    After a delete that row is gone, so such fields are left out.
    """
    held = instance.__dict__
    values: dict[str, Any] = {}
    stale: list[str] = []
    for field in instance._meta.concrete_fields:
        name = field.attname
        # The instance's own dict, not getattr: a deferred field's descriptor would run
        # one query per field, and inside post_delete fail on the row just deleted.
        if name not in held:
            stale.append(name)
            continue
        value = held[name]
        if hasattr(value, "resolve_expression"):
            stale.append(name)
            continue
        values[name] = value
    if not stale:
        return values
    fresh = _read_back(instance, stale)
    return {
        f.attname: fresh[f.attname] if f.attname in fresh else values[f.attname]
        for f in instance._meta.concrete_fields
        if f.attname in fresh or f.attname in values
    }


def _read_back(instance: models.Model, names: list[str]) -> dict[str, Any]:
    manager = type(instance)._base_manager.db_manager(instance._state.db)
    row = manager.filter(pk=instance.pk).values(*names).first()
    return row or {}
