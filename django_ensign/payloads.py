"""The default payload of a published model: its concrete fields, as the database holds them."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


def model_fields(instance: models.Model, *, reread: Collection[str] = ()) -> dict[str, Any]:
    """Every concrete field by attribute name (``author_id``), in field order.

    Each value is the field's own type, as a fresh read of the row would give it: a
    ``total`` assigned ``10`` or ``"9.999"`` is published as the column holds it,
    ``"10.00"`` or ``"10.00"``, not as the caller typed it, and with ``USE_TZ`` a datetime
    in UTC (a naive one taken in ``TIME_ZONE``, as Django stores it). A field the instance does not
    hold as a value (deferred by ``only()``/``defer()``, or saved as an expression such
    as ``F("stock") - 1``) is read back in one query, and so are the fields ``reread``
    names (by attribute name), whatever the instance holds. After a delete that row is
    gone, so such fields are left out.
    """
    held = instance.__dict__
    values: dict[str, Any] = {}
    stale: list[str] = []
    for field in instance._meta.concrete_fields:
        name = field.attname
        # The instance's own dict, not getattr: a deferred field's descriptor would run
        # one query per field, and inside post_delete fail on the row just deleted.
        if name not in held or name in reread:
            stale.append(name)
            continue
        value = held[name]
        if hasattr(value, "resolve_expression"):
            stale.append(name)
            continue
        values[name] = _as_stored(field, value)
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


def _as_stored(field: models.Field[Any, Any], value: Any) -> Any:
    """``value`` in ``field``'s own type, rounded as a decimal column rounds it."""
    if value is None or isinstance(field, models.BinaryField):
        return value  # a BinaryField's to_python would read a str as base64
    original = value
    try:
        # Django's own conversion before it sends most values to the database.
        value = field.to_python(value)
    except Exception:  # a custom field's own conversion
        return original  # the database took it anyway: publish what the caller gave
    if (
        isinstance(field, models.DateTimeField)
        and isinstance(value, dt.datetime)
        and settings.USE_TZ
    ):
        if timezone.is_naive(value):
            # As DateTimeField stores it (with a RuntimeWarning): in the default time zone.
            value = timezone.make_aware(value, timezone.get_default_timezone())
        return value.astimezone(dt.UTC)  # the zone a read of the column gives
    places = getattr(field, "decimal_places", None)
    if isinstance(value, decimal.Decimal) and places is not None and value.is_finite():
        # PostgreSQL rounds a numeric half away from zero; so does ROUND_HALF_UP (SQLite
        # keeps a float and may differ in the last place on a tie). Wide columns need
        # more digits than the default context's 28.
        digits = max(28, (getattr(field, "max_digits", None) or 0) + 1)
        try:
            value = value.quantize(
                decimal.Decimal(1).scaleb(-places),
                rounding=decimal.ROUND_HALF_UP,
                context=decimal.Context(prec=digits),
            )
        except decimal.InvalidOperation:
            return original
    return value
