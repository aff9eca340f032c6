"""Start-up preparation shared by serve.py and tests."""

from __future__ import annotations

from chat.models import Room


def ensure_default_room() -> Room | None:
    """Create the public room ``lobby`` when there are no rooms at all (a fresh install)."""
    if Room.objects.exists():
        return None
    return Room.objects.create(
        slug="lobby", name="Lobby", description="Everyone's welcome here.", is_public=True
    )
