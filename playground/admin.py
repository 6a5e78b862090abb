from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from kombu.exceptions import OperationalError

from . import poison
from .models import Delivery, Notification, OutboxMessage, PoisonMessage


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "message", "status", "total", "created_at", "finished_at"]
    list_filter = ["status"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["notification", "customer", "status", "at"]
    list_filter = ["status"]
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
