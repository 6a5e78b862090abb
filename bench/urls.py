"""The project's URLs plus the baseline of the page benchmark: the hello page's
template, rendered with the same context, queueing nothing."""

import uuid

from django.shortcuts import render
from django.urls import path

from playground.models import Notification
from storefront.urls import urlpatterns as project_urlpatterns

SAME_NOTIFICATION = Notification(id=uuid.uuid4(), message="Hello")


def hello_baseline(request):
    return render(request, "hello.html", {"name": "Mosh", "notification": SAME_NOTIFICATION})


urlpatterns = [*project_urlpatterns, path("bench/hello-baseline/", hello_baseline)]
