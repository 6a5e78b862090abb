from django.shortcuts import render

from .outbox import KeptResult
from .tasks import notify_customers


def say_hello(request):
    result = notify_customers.delay("Hello")
    kept = isinstance(result, KeptResult)  # the broker was away: it waits in the outbox
    return render(request, "hello.html", {"name": "Mosh", "kept": kept})
