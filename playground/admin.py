from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from kombu.exceptions import OperationalError

from . import poison
from .models import Delivery, Notification, OutboxMessage, PoisonMessage


def count_of(status: Delivery.Status) -> Count:
    return Count("deliveries", filter=Q(deliveries__status=status))


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "message", "status", "total", "sent", "failed", "unknown"]
    list_display += ["created_at", "finished_at"]
    list_filter = ["status"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        # One query for the page, not three per notification.
        return (
            super()
            .get_queryset(request)
            .annotate(
                sent=count_of(Delivery.Status.SENT),
                failed=count_of(Delivery.Status.FAILED),
                unknown=count_of(Delivery.Status.UNKNOWN),
            )
        )

    @admin.display(ordering="sent")
    def sent(self, notification: Notification) -> int:
        return notification.sent  # type: ignore[attr-defined]

    @admin.display(ordering="failed")
    def failed(self, notification: Notification) -> int:
        return notification.failed  # type: ignore[attr-defined]

    @admin.display(ordering="unknown", description="unknown (killed mid-send)")
    def unknown(self, notification: Notification) -> str:
        """A link to those customers: each got the email once or not at all."""
        count: int = notification.unknown  # type: ignore[attr-defined]
        if not count:
            return "0"
        url = reverse("admin:playground_delivery_changelist")
        query = f"notification__id__exact={notification.id}&status__exact=unknown"
        return format_html('<a href="{}?{}">{}</a>', url, query, count)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Who was sent what. "Unknown": the worker was killed between handing the email
    to the SMTP server and hearing its answer; it is never sent again (no customer
    gets two), so an operator may check with the customer, or send it by hand."""

    list_display = ["notification", "customer", "status", "error", "at"]
    list_filter = ["status"]
    search_fields = ["customer__email"]
    raw_id_fields = ["notification", "customer"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ["task", "task_id", "created_at"]


@admin.register(PoisonMessage)
class PoisonMessageAdmin(admin.ModelAdmin):
    """The messages the workers gave up on (playground/poison.py). An operator reads
    how each ended, fixes the cause, then replays it, or deletes it to drop it for good."""

    list_display = ["task", "task_id", "deliveries", "last_error", "given_up_at", "worker"]
    list_filter = ["task"]
    search_fields = ["task_id", "task"]
    actions = ["replay"]

    # A record of what happened: only replaying or deleting changes it.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PoisonMessage | None = None) -> bool:
        return False

    # Replaying removes the record, so it takes the permission to delete it.
    @admin.action(description="Replay: send again under its own task id", permissions=["delete"])
    def replay(self, request: HttpRequest, queryset: QuerySet[PoisonMessage]) -> None:
        sent = 0
        for message in queryset:
            try:
                sent += poison.replay(message)
            except OperationalError as error:  # the broker is away: the record stays
                self.message_user(
                    request, f"{message} was not sent ({error}): try again later.", messages.ERROR
                )
        if sent:
            self.message_user(request, f"Sent again: {sent} message(s).", messages.SUCCESS)
