from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("chat.account_urls")),
    path("", include("chat.urls")),
]

# A database outage anywhere in a request is 503 `unavailable` (chat/outages.py).
handler500 = "chat.outages.server_error"
