import uuid

from django.http import JsonResponse
from django.shortcuts import render

from .models import Notification
from .outbox import KeptResult
from .tasks import notify_customers


def say_hello(request):
    # A reload while a notification is on its way shows that one instead of starting another.
    notification = Notification.objects.exclude(status=Notification.Status.DONE).first()
    kept = False
    if notification is None:
        result = notify_customers.delay("Hello")
        kept = isinstance(result, KeptResult)  # the broker was away: it waits in the outbox
        notification, _ = Notification.objects.get_or_create(
            id=result.id, defaults={"message": "Hello"}
        )
    context = {"name": "Mosh", "kept": kept, "notification": notification}
    return render(request, "hello.html", context)


def notification_status(request, notification_id):
    """The notification's progress as JSON, for the hello page to poll."""
    try:
        notification = Notification.objects.get(id=uuid.UUID(notification_id))
    except (ValueError, Notification.DoesNotExist):
        return JsonResponse({"error": "No such notification."}, status=404)
    return JsonResponse(notification.progress())
