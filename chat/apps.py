from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A host project's settings need not define Parley's: defaults from the
        # environment (chat/conf.py), before anything reads them.
        from django.conf import settings

        from chat import conf

        conf.apply_defaults(settings)
        # Access changes made anywhere in Django reach live connections (chat/signals.py).
        from chat import signals

        signals.connect()
