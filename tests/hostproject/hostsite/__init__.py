"""A Django project of someone else's that adds Parley (tests/integration/test_host_project.py):
its own settings, URLs, view, template and static file; ``chat`` under ``/chat/``."""
