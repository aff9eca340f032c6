"""``project.urls`` plus views for server tests.

* ``/test/slow/?seconds=N`` holds a WSGI thread for N seconds (at most 30).
* ``/test/stream-fail/`` streams one chunk, then its iterator raises.
* ``/test/linger/`` sends its whole body (with a Content-Length), then keeps the WSGI
  thread for half a second before the iterator ends: a client that stops reading after
  Content-Length bytes and closes is gone before Twisted finishes the request.
* ``/test/meta/`` echoes the request as Django sees it (forwarded headers, paths, scheme).
* ``/test/finished-count/`` counts ``request_started`` and ``request_finished`` signals:
  Django sends ``request_finished`` from the response's ``close()``, so a response whose
  ``close()`` was skipped shows as started but never finished.
"""

from __future__ import annotations

import time

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

from project.urls import urlpatterns as parley_urlpatterns
from slow_site.apps import signal_counts


def slow(request):
    seconds = min(float(request.GET.get("seconds", "1")), 30.0)
    time.sleep(seconds)
    return HttpResponse(f"slept {seconds}\n", content_type="text/plain")


def stream_fail(request):
    def chunks():
        yield b"first chunk\n"
        raise RuntimeError("stream-fail: the iterator broke on purpose")

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def linger(request):
    body = b"x" * 100

    def chunks():
        yield body
        time.sleep(0.5)

    response = StreamingHttpResponse(chunks(), content_type="text/plain")
    response["Content-Length"] = str(len(body))
    return response


def meta(request):
    return JsonResponse(
        {
            "headers": {k: v for k, v in request.META.items() if k.startswith("HTTP_")},
            "REMOTE_ADDR": request.META.get("REMOTE_ADDR"),
            "SCRIPT_NAME": request.META.get("SCRIPT_NAME"),
            "PATH_INFO": request.META.get("PATH_INFO"),
            "path": request.path,
            "is_secure": request.is_secure(),
            "absolute_uri": request.build_absolute_uri(),
        }
    )


def finished_count(request):
    return JsonResponse(signal_counts())


urlpatterns = [
    path("test/slow/", slow),
    path("test/stream-fail/", stream_fail),
    path("test/linger/", linger),
    path("test/meta/", meta),
    path("test/finished-count/", finished_count),
    *parley_urlpatterns,
]
