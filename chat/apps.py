from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Access changes made anywhere in Django reach live connections (chat/signals.py).
        from chat import signals

        signals.connect()
