from django.shortcuts import render


def home(request):
    """The host project's own page (not Parley's)."""
    return render(request, "hostsite/home.html", {"greeting": "Welcome to the host site"})
