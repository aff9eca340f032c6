"""What counts as "one Unicode emoji" for a reaction (PROTOCOL.md: one grapheme that is an
emoji), judged by the maintained ``emoji`` package's copy of Unicode's emoji data.

It imports neither Django nor Twisted, so the live side and the API share it.

The rule: ``text`` is exactly one entry of the library's emoji data, and that entry is

* not a *component*: a lone skin tone (🏽) or hair style (🦰) is a part of an emoji, not one;
* not *unqualified*: a character whose default look is text (©, ❤, ☺, 1⃣) counts only in
  its emoji form with VS16 (©️, ❤️, ☺️, 1️⃣). That keeps "❤" and "❤️" from becoming two
  reactions that look alike, and plain "1" or "#" is no emoji at all.

So 👍, 👍🏽, 👨‍👩‍👧, 🏳️‍🌈, 🇫🇷 and 1️⃣ are one emoji each; "a", "👍👍", "", " 👍", "👍 " and a lone
regional indicator are not. Every entry of the data is a whole emoji sequence (modifier,
ZWJ, flag, keycap or tag sequence), which Unicode's segmentation keeps in one grapheme; the
library's tokenizer is asked as well to see one emoji spanning the whole text, so an entry
that is ever a concatenation would not pass.
"""

from __future__ import annotations

import emoji

__all__ = ["is_single_emoji"]

_ACCEPTED = frozenset({emoji.STATUS["fully_qualified"], emoji.STATUS["minimally_qualified"]})
# The longest entry of the data is 10 code points; anything far longer is refused before
# the tokenizer sees it.
_MAX_CODE_POINTS = 32


def is_single_emoji(text: object) -> bool:
    """True when ``text`` is one emoji a reaction may carry (see the module's rule)."""
    if not isinstance(text, str) or not text or len(text) > _MAX_CODE_POINTS:
        return False
    entry = emoji.EMOJI_DATA.get(text)
    if entry is None or entry.get("status") not in _ACCEPTED:
        return False
    found = emoji.emoji_list(text)
    return len(found) == 1 and found[0]["match_start"] == 0 and found[0]["match_end"] == len(text)
