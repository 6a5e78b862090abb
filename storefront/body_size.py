"""A request that announces a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE gets 413 at
once, with one warning line, before anything reads the body. Left to Django, the body
was read up to the limit and the request ended in a 400 and an ERROR line with a
traceback (RequestDataTooBig). No form of this site takes a file, so the limit holds
for every body. A chunked body, which announces no length, still meets Django's own
check."""

import logging

from django.conf import settings
from django.http import HttpResponse

logger = logging.getLogger(__name__)


class RefuseOversizedBodies:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        announced = request.META.get("CONTENT_LENGTH") or "0"
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if announced.isdigit() and limit is not None and int(announced) > limit:
            logger.warning(
                "Refused a body of %s bytes (over DATA_UPLOAD_MAX_MEMORY_SIZE, %d): %s %s",
                announced,
                limit,
                request.method,
                request.path,
            )
            return HttpResponse("Request body too large.\n", status=413, content_type="text/plain")
        return self.get_response(request)
