"""Admin views: read-mostly lists of outbox, inbox and dead-letter rows."""

from __future__ import annotations

# === outbox admin ===========================================================
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList as _ChangeList
from django.contrib.auth import get_permission_codename as _get_permission_codename
from django.core.paginator import Paginator as _Paginator
from django.db.models import QuerySet as _QuerySet
from django.http import HttpRequest as _HttpRequest
from django.template.response import TemplateResponse as _TemplateResponse
from django.utils.html import format_html as _format_html

from django_ensign import housekeeping as _housekeeping
from django_ensign.models import OutboxEvent as _OutboxEvent
from django_ensign.models import OutboxStatus as _OutboxStatus

_STATUS_COLOURS = {
    _OutboxStatus.PENDING: "#6c757d",
    _OutboxStatus.IN_FLIGHT: "#0d6efd",
    _OutboxStatus.ACKED: "#198754",
    _OutboxStatus.RETRYING: "#fd7e14",
    _OutboxStatus.DEAD: "#dc3545",
}
_PREVIEW_BYTES = 2000
#: Set on the request by the outbox changelist: the rows it has just counted per status.
_TOTAL_ATTR = "_django_ensign_outbox_total"


def holds_change_permission(model_admin: admin.ModelAdmin[_Any], request: _HttpRequest) -> bool:
    """Whether the user holds the model's change permission, which its read-only admin hides."""
    opts = model_admin.opts
    codename = _get_permission_codename("change", opts)
    return bool(request.user.has_perm(f"{opts.app_label}.{codename}"))


class _ListWithoutBlobs(_ChangeList):
    """A change list that leaves out the columns its page never shows.

    A row's payload can run to megabytes, and the dead and failing rows a filter picks
    are the large ones: a page of a hundred would read them all to show none.
    """

    unread: tuple[str, ...] = ()

    def get_queryset(self, request: _HttpRequest, exclude_parameters: _Any = None) -> _Any:
        return super().get_queryset(request, exclude_parameters).defer(*self.unread)


class _OutboxList(_ListWithoutBlobs):
    unread = ("data", "metadata", "last_error")


class _DeadLetterList(_ListWithoutBlobs):
    unread = ("data", "metadata", "traceback")


if _TYPE_CHECKING:
    _OutboxAdminBase = admin.ModelAdmin[_OutboxEvent]
else:  # django-stubs makes ModelAdmin generic; Django's class is not subscriptable
    _OutboxAdminBase = admin.ModelAdmin  # type: ignore[misc]


@admin.register(_OutboxEvent)
class OutboxEventAdmin(_OutboxAdminBase):
    """Read-only list of outbox rows with their ack status; retry and requeue as actions."""

    change_list_template = "admin/django_ensign/outboxevent/change_list.html"
    list_display = (
        "event_id",
        "status_badge",
        "topic",
        "type_name",
        "ordering_key",
        "attempts",
        "created",
        "acked_at",
        "nack_code",
        "nack_error",
    )
    list_filter = ("status", "topic")
    # The counts per status stand above the list; a filtered page would otherwise also
    # count the whole table, acked rows and all, on each view.
    show_full_result_count = False
    search_fields = ("=event_id", "ordering_key")
    ordering = ("-id",)
    date_hierarchy = None
    actions = ("retry_now", "requeue_dead")
    readonly_fields = (
        "event_id",
        "status_badge",
        "topic",
        "type_name",
        "type_version",
        "mimetype",
        "ordering_key",
        "metadata",
        "payload_preview",
        "created",
        "attempts",
        "next_attempt_at",
        "lease_expires_at",
        "acked_at",
        "nack_code",
        "nack_error",
        "last_error",
    )
    fields = readonly_fields

    def has_add_permission(self, request: _HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: _HttpRequest, obj: _Any = None) -> bool:
        return False

    def has_delete_permission(self, request: _HttpRequest, obj: _Any = None) -> bool:
        return False

    def get_changelist(self, request: _HttpRequest, **kwargs: _Any) -> type[_ChangeList]:
        return _OutboxList

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: _OutboxEvent) -> str:
        colour = _STATUS_COLOURS.get(_OutboxStatus(obj.status), "#6c757d")
        return _format_html(
            '<span class="ensign-status ensign-status-{}" style="background:{};color:#fff;'
            'padding:1px 6px;border-radius:8px">{}</span>',
            obj.status,
            colour,
            obj.get_status_display(),
        )

    @admin.display(description="payload")
    def payload_preview(self, obj: _OutboxEvent) -> str:
        data = bytes(obj.data)
        text = data[:_PREVIEW_BYTES].decode("utf-8", errors="replace")
        more = f" … ({len(data)} bytes)" if len(data) > _PREVIEW_BYTES else ""
        return _format_html("<pre style='white-space:pre-wrap'>{}{}</pre>", text, more)

    def has_resend_permission(self, request: _HttpRequest) -> bool:
        """Who may retry and requeue: holders of the change permission (pages stay read-only)."""
        return holds_change_permission(self, request)

    @admin.action(description="Retry selected waiting events now", permissions=["resend"])
    def retry_now(self, request: _HttpRequest, queryset: _QuerySet[_OutboxEvent]) -> None:
        count = _housekeeping.retry_now(queryset)
        self.message_user(request, f"{count} outbox events will be retried now.")

    @admin.action(description="Requeue selected dead events", permissions=["resend"])
    def requeue_dead(self, request: _HttpRequest, queryset: _QuerySet[_OutboxEvent]) -> None:
        count = _housekeeping.requeue_dead(queryset)
        self.message_user(request, f"{count} dead outbox events requeued.")

    def get_paginator(
        self,
        request: _HttpRequest,
        queryset: _QuerySet[_OutboxEvent],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> _Paginator[_OutboxEvent]:
        paginator: _Paginator[_OutboxEvent] = self.paginator(
            queryset, per_page, orphans, allow_empty_first_page
        )
        total = getattr(request, _TOTAL_ATTR, None)
        if total is not None and not queryset.query.has_filters():
            # The unfiltered list holds every row, which the counts per status above it
            # have just added up: a COUNT(*) of its own would read the whole table again.
            paginator.__dict__["count"] = total  # Paginator.count is a cached_property
        return paginator

    def changelist_view(
        self, request: _HttpRequest, extra_context: dict[str, _Any] | None = None
    ) -> _TemplateResponse:
        health = _housekeeping.health()
        setattr(request, _TOTAL_ATTR, health.total)
        context = {
            **(extra_context or {}),
            "ensign_status_counts": [
                (value, label, health.counts.get(value, 0))
                for value, label in _OutboxStatus.choices
            ],
            "ensign_total": health.total,
            "ensign_oldest_pending_age": health.oldest_pending_age,
        }
        response = super().changelist_view(request, context)
        return response  # type: ignore[return-value]


# === end outbox admin =======================================================

# === inbox admin ============================================================
# The sections of this shared file are owned separately, so imports sit in each section.
from django.contrib import messages as _messages  # noqa: E402

from django_ensign import dispatch as _dispatch  # noqa: E402
from django_ensign.models import DeadLetter as _DeadLetter  # noqa: E402
from django_ensign.models import DeadLetterReason as _DeadLetterReason  # noqa: E402
from django_ensign.models import DeadLetterStatus as _DeadLetterStatus  # noqa: E402
from django_ensign.models import InboxEvent as _InboxEvent  # noqa: E402

if _TYPE_CHECKING:
    _InboxAdminBase = admin.ModelAdmin[_InboxEvent]
    _DeadLetterAdminBase = admin.ModelAdmin[_DeadLetter]
else:
    _InboxAdminBase = _DeadLetterAdminBase = admin.ModelAdmin


class _ReadOnlyAdmin:
    """Rows are written by the subscriber only."""

    def has_add_permission(self, request: _HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: _HttpRequest, obj: _Any = None) -> bool:
        return False


@admin.register(_InboxEvent)
class InboxEventAdmin(_ReadOnlyAdmin, _InboxAdminBase):
    """Which handler applied which event, and when."""

    list_display = ("event_id", "handler", "topic", "type_name", "committed_at", "handled_at")
    list_filter = ("topic", "handler", "type_name", "handled_at")
    search_fields = ("=event_id", "=server_id", "handler")
    ordering = ("-handled_at",)
    # The inbox grows by a row per handler per event: counts stay opt-in (?_facets).
    show_facets = admin.ShowFacets.ALLOW
    show_full_result_count = False
    list_per_page = 100

    def has_delete_permission(self, request: _HttpRequest, obj: _Any = None) -> bool:
        # A deleted row would let a redelivered event be applied again; prune by age instead.
        return False


_REASON_COLOURS = {
    _DeadLetterReason.FAILED: "#dc3545",
    _DeadLetterReason.UNDECODABLE: "#6f42c1",
    _DeadLetterReason.UNKNOWN_TYPE: "#fd7e14",
}


@admin.register(_DeadLetter)
class DeadLetterAdmin(_ReadOnlyAdmin, _DeadLetterAdminBase):
    """Events no handler could apply; replay them once the cause is fixed."""

    list_display = (
        "id",
        "topic",
        "handler_or_none",
        "reason_badge",
        "status",
        "attempts",
        "error",
        "last_failed_at",
    )
    list_filter = ("status", "reason", "topic", "handler")
    search_fields = ("=event_id", "=server_id", "handler", "error")
    date_hierarchy = "created"
    ordering = ("-last_failed_at",)
    show_facets = admin.ShowFacets.ALWAYS
    actions = ("replay_selected",)
    readonly_fields = ("data_preview",)
    exclude = ("data",)

    def get_changelist(self, request: _HttpRequest, **kwargs: _Any) -> type[_ChangeList]:
        return _DeadLetterList

    @admin.display(description="handler", ordering="handler")
    def handler_or_none(self, obj: _DeadLetter) -> str:
        return obj.handler or "(none wanted it)"

    @admin.display(description="reason", ordering="reason")
    def reason_badge(self, obj: _DeadLetter) -> str:
        return _format_html(
            '<span style="color:#fff;background:{};padding:1px 6px;border-radius:3px">{}</span>',
            _REASON_COLOURS.get(_DeadLetterReason(obj.reason), "#6c757d"),
            obj.get_reason_display(),
        )

    @admin.display(description="data")
    def data_preview(self, obj: _DeadLetter) -> str:
        raw = bytes(obj.data)
        text = raw[:_PREVIEW_BYTES].decode("utf-8", errors="replace")
        more = f" … ({len(raw)} bytes)" if len(raw) > _PREVIEW_BYTES else ""
        return _format_html("<pre>{}{}</pre>", text, more)

    def has_replay_permission(self, request: _HttpRequest) -> bool:
        """Who may replay: holders of the change permission (the pages stay read-only)."""
        return holds_change_permission(self, request)

    @admin.action(description="Replay the selected dead letters", permissions=["replay"])
    def replay_selected(self, request: _HttpRequest, queryset: _QuerySet[_DeadLetter]) -> None:
        # Replaying reads each row's payload: the list's queryset left it out.
        rows = queryset.filter(status=_DeadLetterStatus.DEAD).defer(None).order_by("pk")
        replayed, failed = _dispatch.replay_all(rows)
        if replayed:
            self.message_user(request, f"Replayed {replayed} dead letter(s).", _messages.SUCCESS)
        if failed:
            self.message_user(
                request,
                f"{len(failed)} dead letter(s) still dead; the first is "
                f"{_dispatch.why_still_dead(failed[0])}",
                _messages.WARNING,
            )
        if not replayed and not failed:
            self.message_user(request, "Nothing to replay.", _messages.INFO)


# === end inbox admin ========================================================
