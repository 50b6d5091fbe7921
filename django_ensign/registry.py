"""Which models publish which events: the declarative side of the outbox.

A model opts in with the :func:`publishes` decorator, :func:`register`, or the
``ENSIGN_PUBLISHED_MODELS`` setting. Its ``post_save``/``post_delete`` signals then
write an outbox row on the same connection, inside the same transaction, as the save
(a save outside ``atomic()`` gets a transaction of its own: :mod:`atomicsave`).
Bulk paths (``bulk_create``, ``QuerySet.update``) send no signals: use
:func:`django_ensign.outbox.publish` there.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.apps import apps
from django.db import models, transaction
from django.db.models.signals import ModelSignal, post_delete, post_save
from django.utils.module_loading import import_string

from django_ensign import atomicsave, exceptions, outbox, rowwrite
from django_ensign.conf import settings
from django_ensign.payloads import model_fields

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=type[models.Model])
Serializer = Callable[[models.Model], Any]
KeyFunc = Callable[[models.Model], Any]

CREATED, UPDATED, DELETED = "created", "updated", "deleted"


@dataclass(frozen=True)
class Publication:
    """How one model publishes: its topic, event type names, serializer and ordering key."""

    model: type[models.Model]
    topic: str
    on_create: str | None
    on_update: str | None
    on_delete: str | None
    version: str = "1.0.0"
    serializer: Serializer = model_fields
    key: KeyFunc | None = None
    mimetype: str = "application/json"

    # The columns each action's rows share, validated once per (action, model, mimetype):
    # a proxy's rows name the proxy, and without a mimetype the payload's type picks one.
    _shapes: dict[tuple[str, type[models.Model], str], outbox.RowShape] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def type_name(self, action: str) -> str | None:
        return {CREATED: self.on_create, UPDATED: self.on_update, DELETED: self.on_delete}[action]

    def _shape(
        self, action: str, type_name: str, model: type[models.Model], mimetype: str
    ) -> outbox.RowShape:
        shape = self._shapes.get((action, model, mimetype))
        if shape is None:
            meta = {"action": action, "model": model._meta.label}
            shape = outbox.RowShape.validated(self.topic, mimetype, type_name, self.version, meta)
            self._shapes[action, model, mimetype] = shape
        return shape

    def row(
        self,
        instance: models.Model,
        action: str,
        update_fields: Collection[str] | None = None,
    ) -> rowwrite.NewRow | None:
        """The outbox row for ``action`` on ``instance``, or None if that action is off.

        ``update_fields``: the fields an update saved, when it saved only some.
        """
        type_name = self.type_name(action)
        if not type_name:
            return None
        payload = self._payload(instance, action, update_fields)
        data, mimetype = outbox.encode(payload, self.mimetype)
        shape = self._shape(action, type_name, type(instance), mimetype)
        if self.key is None:
            # The concrete model's label: saves through a proxy share the object's key.
            concrete = instance._meta.concrete_model._meta.label_lower  # type: ignore[union-attr]
            return shape.row(data, f"{concrete}:{instance.pk}")
        key = self.key(instance)
        # None means "no order", as in outbox.publish: "None" would put every such
        # event in one key, published one after another.
        return shape.row(data, "" if key is None else str(key))

    def _payload(
        self, instance: models.Model, action: str, update_fields: Collection[str] | None
    ) -> Any:
        if self.serializer is not model_fields or action != UPDATED:
            return self.serializer(instance)
        # After an UPDATE the instance may hold values its row does not: those of fields
        # the save left out, and its generated columns (Django refreshes them on insert
        # only). The default payload is the row as committed, so those are read back.
        return model_fields(instance, reread=_unsaved_fields(type(instance), update_fields))


def _unsaved_fields(
    model: type[models.Model], update_fields: Collection[str] | None
) -> frozenset[str]:
    """Attribute names of the fields whose value an UPDATE of ``model`` did not write."""
    unsaved = _generated_fields(model)
    if update_fields is None:
        return unsaved
    return unsaved | {
        f.attname
        for f in model._meta.concrete_fields
        if not f.primary_key and f.name not in update_fields and f.attname not in update_fields
    }


@functools.cache
def _generated_fields(model: type[models.Model]) -> frozenset[str]:
    return frozenset(f.attname for f in model._meta.concrete_fields if f.generated)


_publications: dict[type[models.Model], Publication] = {}
#: Those registered from ``ENSIGN_PUBLISHED_MODELS``: registering the settings again
#: (a second ``AppConfig.ready``) replaces them, while a model registered in code wins.
_from_settings: set[type[models.Model]] = set()


def _default_name(model: type[models.Model], suffix: str) -> str:
    return f"{model.__name__}{suffix}"


def register(
    model: type[models.Model],
    *,
    topic: str,
    on_create: str | bool | None = True,
    on_update: str | bool | None = True,
    on_delete: str | bool | None = True,
    version: str = "1.0.0",
    serializer: Serializer | None = None,
    key: KeyFunc | None = None,
    mimetype: str = "application/json",
) -> Publication:
    """Make ``model`` publish to ``topic``.

    ``on_create``/``on_update``/``on_delete`` name the event type of each action
    (``True``: ``<Model>Created`` …; ``False``/``None``: not published). ``serializer``
    turns an instance into the payload (default: JSON of its fields). ``key`` gives
    the ordering key (default: the primary key); rows sharing a key are published in
    commit order, and a ``key`` that returns None leaves that event unordered.
    A model registers once: :func:`unregister` it first to change how it publishes.
    """
    existing = _publications.get(model)
    if existing is not None:
        raise exceptions.AlreadyRegistered(
            f"{model._meta.label} already publishes to {existing.topic!r}; a model registers "
            "once (with @publishes, register() or ENSIGN_PUBLISHED_MODELS): unregister() it "
            "first to change how it publishes"
        )
    outbox.validate_topic(topic)
    outbox.validate_format(mimetype, version)

    def name(value: str | bool | None, suffix: str) -> str | None:
        if value is True:
            return _default_name(model, suffix)
        return value or None

    created, updated, deleted = (
        name(on_create, "Created"),
        name(on_update, "Updated"),
        name(on_delete, "Deleted"),
    )
    for type_name in (created, updated, deleted):
        outbox.validate_fits(type_name=type_name)
    outbox.validate_fits(type_version=version, mimetype=mimetype)
    publication = Publication(
        model=model,
        topic=topic,
        on_create=created,
        on_update=updated,
        on_delete=deleted,
        version=version,
        serializer=serializer or model_fields,
        key=key,
        mimetype=mimetype,
    )
    _publications[model] = publication
    atomicsave.install(model)
    _sync_receivers()
    return publication


def publishes(topic: str, **options: Any) -> Callable[[ModelT], ModelT]:
    """Class decorator form of :func:`register`: ``@publishes("orders", on_delete=False)``."""

    def decorate(model: ModelT) -> ModelT:
        register(model, topic=topic, **options)
        return model

    return decorate


def unregister(model: type[models.Model]) -> None:
    """Stop ``model`` from publishing (tests use it to undo a ``register``)."""
    if _publications.pop(model, None) is None:
        raise exceptions.NotRegistered(f"{model._meta.label} does not publish events")
    _from_settings.discard(model)
    atomicsave.uninstall(model)
    _sync_receivers()


def publication_for(model: type[models.Model]) -> Publication | None:
    """The model's publication; proxies fall back to their concrete model's."""
    found = _publications.get(model)
    if found is None and model._meta.proxy:
        found = _publications.get(model._meta.concrete_model)  # type: ignore[arg-type]
    return found


def publications() -> list[Publication]:
    """Every registered publication."""
    return list(_publications.values())


def registered_in_code(model: type[models.Model]) -> Publication | None:
    """The publication ``model`` got from ``@publishes`` or :func:`register`, if any."""
    return None if model in _from_settings else _publications.get(model)


def unknown_setting_models() -> list[str]:
    """Labels in ``ENSIGN_PUBLISHED_MODELS`` that name no installed model."""
    unknown = []
    for label in settings.PUBLISHED_MODELS:
        try:
            apps.get_model(label)
        except (LookupError, ValueError):
            unknown.append(label)
    return unknown


#: Options of an ``ENSIGN_PUBLISHED_MODELS`` entry that name a function.
FUNCTION_OPTIONS = ("serializer", "key")


def setting_function(value: Any) -> Any:
    """A function option as given in the setting: a callable, None, or its dotted path.

    Raises ImportError for a path that imports nothing and TypeError for anything else
    that cannot be called.
    """
    if isinstance(value, str):
        value = import_string(value)
    if value is not None and not callable(value):
        raise TypeError(f"{value!r} is not callable")
    return value


def register_from_settings() -> None:
    """Register each model of ``ENSIGN_PUBLISHED_MODELS``; unknown labels are left to the checks."""
    if not settings.published_models_is_mapping():
        # Web and Celery processes run no checks: say it where their logs show it.
        logger.error(
            "ENSIGN_PUBLISHED_MODELS is not a dict of 'app_label.Model' to options, so no "
            "model publishes from it (check django_ensign.E007)"
        )
    for label, options in settings.PUBLISHED_MODELS.items():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue
        if not isinstance(options, dict) or "topic" not in options:
            continue  # reported by check django_ensign.E007
        if registered_in_code(model) is not None:
            continue  # reported by check django_ensign.E011; the code's registration stays
        if model in _publications:
            unregister(model)  # this setting's own, from an earlier ready()
        options = dict(options)
        topic = options.pop("topic")
        try:
            for name in FUNCTION_OPTIONS:
                options[name] = setting_function(options.get(name))
            register(model, topic=topic, **options)
        except (exceptions.EnsignError, TypeError, ImportError):
            # A bad topic, mimetype, version or function, or an unknown option: start-up
            # goes on, and `check` names it (E004, E009, E012, E007) instead of a traceback
            # from ready().
            continue
        _from_settings.add(model)


def _write(
    instance: models.Model,
    action: str,
    using: str,
    update_fields: Collection[str] | None = None,
) -> None:
    publication = publication_for(type(instance))
    if publication is None:
        return
    # Django sends post_save after its own mark_for_rollback_on_error: without this, a
    # caller catching the failure (a serializer's error, an empty payload) inside its
    # atomic() block would commit the change without its event.
    with transaction.mark_for_rollback_on_error(using):
        row = publication.row(instance, action, update_fields)
        if row is not None:
            outbox.write_rows([row], using=using)


def _on_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool,
    using: str,
    update_fields: Collection[str] | None = None,
    **kwargs: Any,
) -> None:
    if raw:
        return  # fixtures being loaded are not business changes
    _write(instance, CREATED if created else UPDATED, using, update_fields)


def _on_delete(
    sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any
) -> None:
    _write(instance, DELETED, using)


#: Models the receivers are connected for; None until ``AppConfig.ready``.
_connected: set[type[models.Model]] | None = None
_SAVE_UID = "django_ensign.outbox.post_save"
_DELETE_UID = "django_ensign.outbox.post_delete"


def connect_signals() -> None:
    """Register the settings' models and connect the receivers (``AppConfig.ready`` does)."""
    global _connected
    register_from_settings()
    if _connected is None:
        _connected = set()
    _sync_receivers()


def _sync_receivers() -> None:
    """Connect the receivers for exactly the publishing models and their proxies.

    Per model, not for every sender: Django deletes a queryset with one ``DELETE`` only
    when no ``post_delete`` receiver listens to its model, and a receiver for all models
    would make every ``QuerySet.delete()`` in the project load its rows first.
    """
    if _connected is None:
        return  # before AppConfig.ready: it connects every registration at once
    wanted = {m for m in apps.get_models() if publication_for(m) is not None}
    wanted.update(_publications)
    for model in _connected - wanted:
        post_save.disconnect(sender=model, dispatch_uid=_SAVE_UID)
        post_delete.disconnect(sender=model, dispatch_uid=_DELETE_UID)
    for model in wanted - _connected:
        _connect_first(post_save, _on_save, model, _SAVE_UID)
        _connect_first(post_delete, _on_delete, model, _DELETE_UID)
    _connected.clear()
    _connected.update(wanted)


def _connect_first(
    signal: ModelSignal, receiver: Callable[..., None], model: type[models.Model], uid: str
) -> None:
    """Connect ``receiver`` for ``model`` ahead of the receivers already connected.

    Receivers in the project's ``models.py`` connect before any ``ready()``. Run after
    them, the outbox would miss the change when one raises and the caller catches it
    inside ``atomic()``, and a receiver saving the instance again would put its update
    event ahead of the creation.
    """
    signal.connect(receiver, sender=model, dispatch_uid=uid)
    # Django's lookup key for a dispatch_uid and a class sender; the entries' other
    # fields differ between Django versions, the key comes first in all of them.
    key = (uid, id(model))
    with signal.lock:
        ours = [entry for entry in signal.receivers if entry[0] == key]
        signal.receivers[:] = ours + [entry for entry in signal.receivers if entry[0] != key]
        signal.sender_receivers_cache.clear()
