"""The handler registry: ``@django_ensign.handler`` and discovery of ``ensign_handlers``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured

import django_ensign
from django_ensign import handlers
from django_ensign.handlers import Handler, InboundEvent, handler_name, registry
from django_ensign.models import DeadLetter, InboxEvent


@pytest.fixture
def scratch() -> Iterator[list[str]]:
    """Names registered by the test, unregistered afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        registry.unregister(name)


def event(topic: str, type_name: str = "", mimetype: str = "application/json") -> InboundEvent:
    return InboundEvent(
        topic=topic, event_id="e1", data=b"{}", type_name=type_name, mimetype=mimetype
    )


def test_handlers_in_installed_apps_are_discovered() -> None:
    assert {"sub-multi", "sub-typed", "sub-bulk"} <= set(registry.topics())
    names = [h.name for h in registry.for_topic("sub-multi")]
    assert names == [
        "tests.handlerapp.ensign_handlers.multi_sync",
        "tests.handlerapp.ensign_handlers.multi_async",
    ]
    assert [h.is_async for h in registry.for_topic("sub-multi")] == [False, True]


def test_the_package_exports_the_decorator(scratch: list[str]) -> None:
    @django_ensign.handler("reg-topic")
    def on_event(event: InboundEvent) -> None:
        pass

    scratch.append(handler_name(on_event))
    assert registry.get(handler_name(on_event)) is not None
    assert on_event.__name__ == "on_event"  # the function itself is returned


def test_type_name_and_mimetype_narrow_a_handler(scratch: list[str]) -> None:
    @django_ensign.handler("reg-typed", type_name="Reading", mimetype="application/json")
    def readings(event: InboundEvent) -> None:
        pass

    @django_ensign.handler("reg-typed")
    def everything(event: InboundEvent) -> None:
        pass

    scratch.extend([handler_name(readings), handler_name(everything)])

    def wanted(ev: InboundEvent) -> list[str]:
        return [h.func.__name__ for h in registry.for_event(ev)]

    assert wanted(event("reg-typed", "Reading")) == ["readings", "everything"]
    assert wanted(event("reg-typed", "Reading", "application/json; charset=utf-8")) == [
        "readings",
        "everything",
    ]
    assert wanted(event("reg-typed", "Reading", "text/plain")) == ["everything"]
    assert wanted(event("reg-typed", "Alert")) == ["everything"]
    assert wanted(event("other", "Reading")) == []


def test_a_pinned_name_keys_the_inbox(scratch: list[str]) -> None:
    @django_ensign.handler("reg-named", name="weather.v1")
    def renamed_later(event: InboundEvent) -> None:
        pass

    scratch.append("weather.v1")
    entry = registry.get("weather.v1")
    assert entry is not None
    assert entry.func is renamed_later


def test_a_handler_needs_a_topic() -> None:
    with pytest.raises(ValueError, match="topic"):
        django_ensign.handler("")


def test_inbound_event_decodes_json_and_text() -> None:
    ev = InboundEvent(topic="t", event_id="e", data=b'{"a": [1]}')
    assert ev.json() == {"a": [1]}
    assert ev.text() == '{"a": [1]}'


def test_one_name_for_two_topics_is_refused(scratch: list[str]) -> None:
    def both(event: InboundEvent) -> None:
        pass

    django_ensign.handler("reg-first")(both)
    scratch.append(handler_name(both))
    with pytest.raises(ImproperlyConfigured, match="name="):
        django_ensign.handler("reg-second")(both)  # stacked decorators do this
    with pytest.raises(ImproperlyConfigured, match="reg-first"):
        django_ensign.handler("reg-first", type_name="Reading")(both)
    assert [h.topic for h in registry.all() if h.func is both] == ["reg-first"]


def test_registering_the_same_handler_again_replaces_it(scratch: list[str]) -> None:
    def reloaded(event: InboundEvent) -> None:
        pass

    django_ensign.handler("reg-reload", type_name="Reading", name="reg.reload")(reloaded)
    scratch.append("reg.reload")

    def reloaded_again(event: InboundEvent) -> None:  # what a module reload registers
        pass

    django_ensign.handler("reg-reload", type_name="Reading", name="reg.reload")(reloaded_again)
    entry = registry.get("reg.reload")
    assert entry is not None
    assert entry.func is reloaded_again


def test_a_name_longer_than_the_inbox_keeps_is_refused() -> None:
    long_name = "n" * (handlers.NAME_MAX + 1)
    with pytest.raises(ImproperlyConfigured, match="Pass a shorter stable name"):
        registry.register(Handler(func=lambda event: None, topic="t", name=long_name))
    assert registry.get(long_name) is None
    for model in (InboxEvent, DeadLetter):
        assert model._meta.get_field("handler").max_length == handlers.NAME_MAX
