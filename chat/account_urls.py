from django.contrib.auth import views as auth_views
from django.urls import path

from chat import token_views, views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("tokens/", token_views.tokens_page, name="tokens"),
]
