from django.contrib import admin
from django.urls import include, path

from hostsite import views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    # Parley's pages link to login, logout and signup by these names.
    path("accounts/", include("chat.account_urls")),
    path("chat/", include("chat.urls")),
]
