"""The fonts every name and message is drawn with: kudos cards (Pillow) and the pages the gateway
serves (as web fonts), so a name looks the same on a card, on the TV screen and in the portal.

DejaVu Sans (Latin, Greek, Cyrillic, Arabic, Hebrew and most symbols) ships in this folder.
The faces for the scripts it lacks are large (Noto Sans CJK alone is 39 MB), so they are not in
the repository: ``ops/infra/fonts.py`` takes them from Debian's packages (``apt-get download``,
verified by apt) into :func:`font_dir` when the project is installed (``make up``, ``make test``,
the container image), never at run time. Each face lists the scripts it is there for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Face:
    """One typeface: its regular and bold files, where they come from, and what it is for."""

    key: str
    family: str  # the CSS family name the gateway's @font-face rules give it
    regular: str
    bold: str | None  # None: the regular file is used for bold too (colour emoji)
    package: str | None  # the Debian package it comes from; None: shipped in this folder
    scripts: str
    index: int = 0  # the face inside a collection (.ttc)
    # The code points the browser fetches the web font for (CSS unicode-range); None: all.
    unicode_range: str | None = None


# In fallback order: a character is drawn with the first face that has it (emoji first, but only
# for emoji-presentation clusters: the card decides that per grapheme cluster).
LATIN = Face("latin", "Inside Track Sans", "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", None,
             "Latin, Greek, Cyrillic, Arabic, Hebrew, symbols")
THAI = Face("thai", "Inside Track Thai", "NotoSansThai-Regular.ttf", "NotoSansThai-Bold.ttf", "fonts-noto-core",
            "Thai", unicode_range="U+0E00-0E7F")
DEVANAGARI = Face("devanagari", "Inside Track Devanagari", "NotoSansDevanagari-Regular.ttf",
                  "NotoSansDevanagari-Bold.ttf", "fonts-noto-core", "Devanagari (Hindi, Marathi, Nepali)",
                  unicode_range="U+0900-097F, U+1CD0-1CFF, U+A8E0-A8FF")
# Index 2 of the collection is Noto Sans CJK SC; it has every Han, kana and Hangul character the
# other regional faces have (only some glyph shapes differ).
CJK = Face("cjk", "Inside Track CJK", "NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc", "fonts-noto-cjk",
           "Chinese, Japanese, Korean", index=2,
           unicode_range="U+1100-11FF, U+2E80-2FDF, U+2FF0-303F, U+3040-31FF, U+3200-4DBF, U+4E00-9FFF, "
                         "U+A960-A97F, U+AC00-D7FF, U+F900-FAFF, U+FE30-FE4F, U+FF00-FFEF, U+20000-3FFFF")
# Colour bitmaps (CBDT): Pillow draws them at their one strike, 109 px, and the card scales them.
EMOJI = Face("emoji", "Inside Track Emoji", "NotoColorEmoji.ttf", None, "fonts-noto-color-emoji",
             "colour emoji, skin tones, ZWJ sequences, flags",
             unicode_range="U+231A-231B, U+23E9-23F3, U+23F8-23FA, U+25FD-25FE, U+2600-27BF, U+2934-2935, "
                           "U+2B05-2B55, U+3030, U+303D, U+3297, U+3299, U+FE0F, U+200D, U+20E3, "
                           "U+1F000-1FAFF, U+E0020-E007F")
TEXT_FACES = (LATIN, THAI, DEVANAGARI, CJK)
FACES = (*TEXT_FACES, EMOJI)
EMOJI_STRIKE = 109  # the only size NotoColorEmoji.ttf has


def font_dir(settings) -> Path:
    """Where the fetched faces are: ``INSIDETRACK_FONT_DIR``, else ``<cache dir>/fonts``."""
    return settings.font_dir or settings.cache_dir / "fonts"


def face_path(face: Face, folder: Path, bold: bool = False) -> Path:
    name = (face.bold or face.regular) if bold else face.regular
    return (SHIPPED_DIR if face.package is None else folder) / name


def files(face: Face) -> tuple[str, ...]:
    return (face.regular,) if face.bold is None else (face.regular, face.bold)


def missing(folder: Path) -> list[str]:
    """The fetched font files not (yet) in ``folder``."""
    return [name for face in FACES if face.package for name in files(face) if not (folder / name).is_file()]


def served_files(folder: Path) -> dict[str, Path]:
    """Every font file the gateway may serve, by name (nothing else in either folder)."""
    return {name: (SHIPPED_DIR if face.package is None else folder) / name for face in FACES for name in files(face)}


def web_fonts_css(url_prefix: str = "/fonts/") -> str:
    """@font-face rules for every face; a page sets ``font-family: var(--it-font)``.

    Browsers fetch a face only when the page shows a character in its unicode-range. The emoji
    face comes first in the stack so ☕ is the colour cup rather than DejaVu's outline one.
    """
    rules = []
    for face in FACES:
        for bold in (False, True) if face.bold else (False,):
            name = face.bold if bold else face.regular
            fmt = "collection" if name.endswith(".ttc") else "truetype"
            rng = f"\n  unicode-range: {face.unicode_range};" if face.unicode_range else ""
            weight = "bold" if bold else "normal" if face.bold else "100 900"
            rules.append(
                f'@font-face {{\n  font-family: "{face.family}";\n  src: url("{url_prefix}{name}") format("{fmt}");\n'
                f"  font-weight: {weight};\n  font-display: swap;{rng}\n}}"
            )
    stack = ", ".join(f'"{face.family}"' for face in (EMOJI, *TEXT_FACES))
    rules.append(f":root {{ --it-font: {stack}, system-ui, sans-serif; }}")
    return "\n".join(rules) + "\n"


__all__ = ["CJK", "DEVANAGARI", "EMOJI", "EMOJI_STRIKE", "FACES", "LATIN", "SHIPPED_DIR", "TEXT_FACES", "THAI",
           "Face", "face_path", "files", "font_dir", "missing", "served_files", "web_fonts_css"]
