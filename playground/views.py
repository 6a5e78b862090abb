import uuid

from django.core.cache import caches
from django.db import IntegrityError, transaction
from django.http import JsonResponse
from django.shortcuts import render

from .models import Notification
from .outbox import KeptResult
from .tasks import notify_customers


def active_notification():
    """The notification on its way, if any, as this process saw it within the last
    second: the page is read far more often than notifications start or end, and a
    stale answer is safe (the database still lets only one notification be active)."""
    return caches["local"].get_or_set(
        "active-notification", lambda: Notification.objects.filter(active=True).first()
    )


def say_hello(request):
    # A reload while a notification is on its way shows that one instead of starting another.
    notification = active_notification()
    kept = False
    if notification is None:
        try:
            with transaction.atomic():
                notification = Notification.objects.create(id=uuid.uuid4(), message="Hello")
        except IntegrityError:  # another request started one a moment ago: show that one
            notification = Notification.objects.filter(active=True).first()
        else:
            # The course's notify_customers.delay('Hello'), under the notification's id.
            result = notify_customers.apply_async(("Hello",), task_id=str(notification.id))
            kept = isinstance(result, KeptResult)  # the broker was away: it waits in the outbox
        caches["local"].set("active-notification", notification)
    context = {"name": "Mosh", "kept": kept, "notification": notification}
    return render(request, "hello.html", context)


def notification_status(request, notification_id):
    """The notification's progress as JSON, for the hello page to poll."""
    try:
        notification = Notification.objects.get(id=uuid.UUID(notification_id))
    except (ValueError, Notification.DoesNotExist):
        return JsonResponse({"error": "No such notification."}, status=404)
    return JsonResponse(notification.progress())
