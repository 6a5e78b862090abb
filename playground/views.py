"""The playground's pages: interfaces to the notification's rules (services.py)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from . import services


def say_hello(request: HttpRequest) -> HttpResponse:
    """The course's page. It starts notify_customers('Hello'), or shows the notification
    already on its way instead of starting another."""
    notification, kept = services.show_or_start("Hello")
    context = {"name": "Mosh", "kept": kept, "notification": notification}
    return render(request, "hello.html", context)


def notification_status(request: HttpRequest, notification_id: str) -> JsonResponse:
    """The notification's progress as JSON, for the hello page to poll."""
    progress = services.progress_of(notification_id)
    if progress is None:
        return JsonResponse({"error": "No such notification."}, status=404)
    return JsonResponse(progress)
