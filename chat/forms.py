"""Forms of the chat pages."""

from __future__ import annotations

from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError

from chat.accounts import lookalike_of, mixes_scripts_confusably


class SignupForm(UserCreationForm):
    """Django's own ``UserCreationForm`` (username, password1, password2), as PROTOCOL.md says,
    refusing usernames that could pass for someone else's.

    Only self-service signup is held to this: staff creating accounts in the admin use
    Django's forms and may name an account as they see fit.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(
            {"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"}
        )

    def clean_username(self) -> str | None:
        username = super().clean_username()  # None when it differs from one only in case
        if not username:
            return username
        if mixes_scripts_confusably(username):
            raise ValidationError(
                "This username mixes letters of different scripts that look alike "
                "(such as a Cyrillic \u0430 among Latin letters). Use letters of one script.",
                code="mixed_scripts",
            )
        if lookalike_of(username) is not None:
            raise ValidationError(
                "This username looks too much like an existing one. Choose another.",
                code="lookalike",
            )
        return username
