"""Forms of the chat pages."""

from __future__ import annotations

from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    """Django's own ``UserCreationForm`` (username, password1, password2), as PROTOCOL.md says.

    Subclassed only so that the pages have one name to import and a place to grow.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(
            {"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"}
        )
