"""The playground's pages: interfaces to the notification's rules (services.py)."""

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from . import services


@require_http_methods(["GET", "HEAD", "POST"])
def say_hello(request: HttpRequest) -> HttpResponse:
    """The course's page: the notification on its way, if any. A signed-in staff user's
    POST starts notify_customers('Hello'); in development (the course's demo) so does a
    GET. Nothing else writes: not a HEAD, a prefetch, or a stranger."""
    if request.method == "POST" and not request.user.is_staff:
        raise PermissionDenied
    starts = request.method == "POST" or (
        request.method == "GET" and settings.HELLO_GET_STARTS_NOTIFICATION
    )
    kept = False
    if starts:
        notification, kept = services.show_or_start("Hello")
    else:
        notification = services.active_notification()
    context = {"name": "Mosh", "kept": kept, "notification": notification}
    return render(request, "hello.html", context)


def notification_status(request: HttpRequest, notification_id: str) -> JsonResponse:
    """The notification's progress as JSON, for the hello page to poll."""
    progress = services.progress_of(notification_id)
    if progress is None:
        return JsonResponse({"error": "No such notification."}, status=404)
    return JsonResponse(progress)
