"""chat.emoji_check.is_single_emoji: what a reaction may carry (PROTOCOL.md: one emoji)."""

from __future__ import annotations

import unicodedata

import emoji
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.emoji_check import is_single_emoji


# Sequences with invisible joiners, selectors or tags are spelled as escapes.
@pytest.mark.parametrize(
    "text",
    [
        "👍",
        "😀",
        "👍🏽",  # skin-tone modifier
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # ZWJ sequence
        "\U0001f9d1\U0001f3ff\u200d\U0001f680",  # modifier inside a ZWJ sequence
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # VS16 and ZWJ
        "🇫🇷",  # flag: a pair of regional indicators
        # subdivision flag (Scotland): a tag sequence
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        "1\ufe0f\u20e3",  # keycap
        "#\ufe0f\u20e3",
        "\u2764\ufe0f",  # text-default character with VS16
        "\u00a9\ufe0f",
        "\u263a\ufe0f",
        # minimally qualified: emoji by default, only the VS16 after the fog left out
        "\U0001f636\u200d\U0001f32b",
    ],
)
def test_one_emoji(text):
    assert is_single_emoji(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "1",
        "#",
        "1\ufe0f",  # VS16 alone does not make a digit an emoji; the keycap does
        "1\u20e3",  # keycap without VS16: unqualified
        "❤",  # text-default, no VS16
        "©",
        "☺",
        "👍👍",
        "👍 ",
        " 👍",
        "👍\n",
        "👍a",
        "🇫",  # one regional indicator
        "🇫🇷🇩🇪",
        "🏽",  # skin-tone swatch alone: a component
        "🦰",  # hair component alone
        "\u200d",
        "\ufe0f",
        "👍\u200d",
        "👍\ufe0f",
        ":thumbs_up:",
        "👍" * 40,
        "\ud83d",  # a lone surrogate, as json.loads lets through
    ],
)
def test_not_one_emoji(text):
    assert not is_single_emoji(text)


@pytest.mark.parametrize("value", [None, 1, b"\xf0\x9f\x91\x8d", ["👍"]])
def test_not_a_string(value):
    assert not is_single_emoji(value)


def test_every_fully_qualified_emoji_is_accepted():
    fully = [
        k for k, v in emoji.EMOJI_DATA.items() if v["status"] == emoji.STATUS["fully_qualified"]
    ]
    assert len(fully) > 3000
    assert all(is_single_emoji(k) for k in fully)


@given(st.text(max_size=12))
def test_accepted_text_is_one_emoji_of_the_library(text):
    if is_single_emoji(text):
        assert emoji.is_emoji(text)
        assert emoji.emoji_count(text) == 1
        assert text == text.strip()
        assert not any(unicodedata.category(c) == "Zs" for c in text)


@given(
    st.lists(
        st.sampled_from(["👍", "🏽", "\u200d", "\ufe0f", "🇫", "🇷", "1", "⃣", "❤", "a"]), max_size=6
    )
)
def test_fragments_are_accepted_only_when_the_library_has_the_whole(parts):
    text = "".join(parts)
    if is_single_emoji(text):
        assert text in emoji.EMOJI_DATA
        assert emoji.EMOJI_DATA[text]["status"] in (
            emoji.STATUS["fully_qualified"],
            emoji.STATUS["minimally_qualified"],
        )
