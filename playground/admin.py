from django.contrib import admin

from .models import Delivery, Notification, OutboxMessage


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
