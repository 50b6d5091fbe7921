"""A published model's save and its outbox row commit together, even under autocommit.

Django sends ``post_save`` after ``save_base`` has left its own transaction handling,
so under autocommit (Django's default outside ``atomic()``) the change is already
committed when the outbox's receiver writes the event row: a crash or a failed write
in between would keep the change and lose its event. A registered model's
``save_base`` therefore opens a transaction when none is open, without a savepoint.
Inside the caller's ``atomic()``, or with autocommit turned off, it adds nothing.
Deletes need none of this: Django's collector sends ``post_delete`` inside its own
transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import connections, models, router, transaction

from django_ensign import exceptions, txstate

#: Set on the wrapper: the class's own ``save_base`` it replaced, or None if inherited.
_REPLACED = "_django_ensign_replaced"


def install(model: type[models.Model]) -> None:
    """Make ``model``'s saves atomic (no-op when already installed on it)."""
    if _installed(model):
        return
    own: Callable[..., Any] | None = model.__dict__.get("save_base")
    concrete = model._meta.concrete_model

    def save_base(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        # Looked up at each call, so a parent's install or uninstall is seen.
        inner: Callable[..., Any] = (
            own.__get__(self) if own is not None else super(model, self).save_base  # type: ignore[misc]
        )
        if type(self)._meta.concrete_model is not concrete:
            return inner(*args, **kwargs)  # a multi-table child: it publishes on its own or not
        using = kwargs.get("using") or (args[3] if len(args) > 3 else None)
        using = using or router.db_for_write(type(self), instance=self)
        connection = connections[using]
        if connection.in_atomic_block or not connection.get_autocommit():
            return inner(*args, **kwargs)  # the caller's transaction covers the event
        with transaction.atomic(using=using, savepoint=False):
            result = inner(*args, **kwargs)
            if txstate.doomed(connection):
                # A receiver swallowed a database error: leaving the block would roll back
                # in silence, and the caller would believe the object saved.
                raise exceptions.SaveRolledBack(
                    f"the save of {self._meta.label} {self.pk!r} was rolled back: a "
                    "pre_save or post_save receiver caught a database error inside its "
                    "transaction (wrap that receiver's query in atomic() to let it fail alone)"
                )
        return result

    functools.update_wrapper(save_base, model.save_base)  # keeps alters_data for templates
    del save_base.__wrapped__  # type: ignore[attr-defined]  # the real one is found per call
    setattr(save_base, _REPLACED, own)
    model.save_base = save_base  # type: ignore[method-assign]


def uninstall(model: type[models.Model]) -> None:
    """Give ``model`` back the ``save_base`` it had before :func:`install`."""
    if not _installed(model):
        return
    own = getattr(model.__dict__["save_base"], _REPLACED)
    if own is None:
        del model.save_base  # the inherited one shows through again
    else:
        model.save_base = own  # type: ignore[method-assign]


def _installed(model: type[models.Model]) -> bool:
    return hasattr(model.__dict__.get("save_base"), _REPLACED)
