"""Text people typed, made safe to show: on cards, screens and feeds.

Line and word separators become plain newlines and spaces; other control characters,
zero-width characters and bidirectional marks/overrides are dropped (they are invisible, and
an override can make a name or a message read backwards on a screen). The zero-width joiner and
non-joiner are kept where they join two visible characters: 👩\u200d💻 is one emoji (a woman
technologist, not a woman and a laptop), and Persian and Indic words need them.
"""

from __future__ import annotations

import re
import unicodedata

_NEWLINES = re.compile(r"\r\n|[\r\u000b\u000c\u001c-\u001e\u0085\u2028\u2029]")
_SPACES = re.compile(r"[\t\u001f\u00a0]")
_UNSAFE = re.compile(
    r"[\u0000-\u0008\u000e-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
# A joiner (ZWNJ, ZWJ) that does not stand alone between two visible characters.
_LOOSE_JOINERS = re.compile(r"(?<![^\s\u200c\u200d])[\u200c\u200d]+|[\u200c\u200d]+(?![^\s\u200c\u200d])|[\u200c\u200d]{2,}")


def clean_text(text: str) -> str:
    """Normalize (NFC), turn separators into newlines/spaces, drop control, zero-width and
    direction characters, trim."""
    text = _SPACES.sub(" ", _NEWLINES.sub("\n", unicodedata.normalize("NFC", text)))
    return _LOOSE_JOINERS.sub("", _UNSAFE.sub("", text)).strip()


def one_line(text: str) -> str:
    """A name as a card or a feed shows it: cleaned, on one line, single spaces."""
    return " ".join(clean_text(text).split())


__all__ = ["clean_text", "one_line"]
