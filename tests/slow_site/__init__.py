"""A test-only Django site: Parley's URLs plus views that misbehave on purpose.

Started with ``DJANGO_SETTINGS_MODULE=slow_site.settings`` and ``PYTHONPATH=<repo>/tests``
(serve.py only sets the settings module when the environment has none).
"""
