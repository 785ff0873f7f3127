"""Text on a card in any script: font fallback per grapheme cluster, bidi, colour emoji.

Pillow draws one string with one font. A name like ``李小龍 Li`` or a message like
``🎉 شكراً! 谢谢你 for the review 🙏`` needs several, so a line is cut into *runs*:

1. grapheme clusters (``regex``'s ``\\X``: a letter with its marks, an emoji with its skin tone,
   a ZWJ family, a flag) are never split;
2. each cluster gets the first face of shared/fonts that has every one of its characters (the
   font's cmap, read from the file); emoji-presentation clusters get the colour emoji face;
   a space stays in the run it is in when that face has it;
3. the Unicode bidi algorithm (FriBidi, the library Pillow's own RAQM layout uses) gives each
   character its level; runs are cut where the level changes and put in visual order (rule L2);
4. each run is shaped and drawn by Pillow/RAQM in its direction; colour emoji are drawn at the
   font's one bitmap size (109 px) with ``embedded_color`` and scaled to the text size.

A cluster no face has is drawn with the first face (a missing-glyph box) and reported by
:func:`TextStyle.missing`, which the tests use to prove the scripts they list are covered.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import mmap
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import regex
from PIL import Image, ImageDraw, ImageFont, features

from shared.config import load_settings
from shared.fonts import EMOJI, EMOJI_STRIKE, TEXT_FACES, Face, face_path, font_dir, missing

_CLUSTER = regex.compile(r"\X")
# A cluster shown as a colour emoji: emoji presentation by default, or asked for with VS16,
# a keycap, a skin tone, a ZWJ sequence or a flag.
_EMOJI = regex.compile(
    r"\p{Emoji_Presentation}|\p{Emoji}\uFE0F|\p{Emoji}\u20E3|\p{Emoji_Modifier}"
    r"|\p{Extended_Pictographic}\u200D|\p{Regional_Indicator}|\U000E007F"
)
# Characters a font need not have for a cluster to be its own (joiners, variation selectors).
_IGNORABLE = frozenset([0x200C, 0x200D, 0x20E3, *range(0xFE00, 0xFE10), *range(0xE0020, 0xE0080)])
_RTL_LETTER = regex.compile(r"[\p{bc=R}\p{bc=AL}]")
FSI, PDI = "\u2068", "\u2069"  # first-strong isolate: a name keeps its own direction in a sentence
_ISOLATES = frozenset("\u2066\u2067\u2068\u2069")  # steer the bidi levels; never drawn
_KANA = regex.compile(r"[\p{Hiragana}\p{Katakana}]")
_HANGUL = regex.compile(r"\p{Hangul}")
RAQM = features.check_feature("raqm")


class FontsMissing(RuntimeError):
    """The fetched fonts are not where the settings say."""


_folder: list[Path] = []  # the fetched fonts' folder, once known


def use_fonts(folder: Path) -> Path:
    """Draw with the fonts in ``folder`` (the kudos process calls it at start with its
    settings'); raise :class:`FontsMissing` if any is absent, so a process without them does not
    start rather than draw boxes."""
    absent = missing(folder)
    if absent:
        raise FontsMissing(
            f"fonts missing in {folder}: {', '.join(absent)}; `insidetrack infra provision` (make up / make test) "
            "fetches them, or set INSIDETRACK_FONT_DIR"
        )
    if _folder != [folder]:
        _folder[:] = [folder]
        for cached in (_coverage, load, _face_for, _length, _width, _emoji, _emoji_scaled):
            cached.cache_clear()
    return folder


def fonts_folder() -> Path:
    """The folder :func:`use_fonts` was given, else the one the environment's settings name."""
    return _folder[0] if _folder else use_fonts(font_dir(load_settings()))


@dataclass(frozen=True)
class Coverage:
    """The code points a font maps to a glyph, as sorted inclusive ranges (``ch in coverage``)."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, code: int) -> bool:
        i = bisect.bisect_right(self._starts, code) - 1
        return i >= 0 and code <= self.ranges[i][1]

    @property
    def _starts(self) -> list[int]:
        starts = self.__dict__.get("starts")
        if starts is None:
            starts = [start for start, _ in self.ranges]
            object.__setattr__(self, "starts", starts)
        return starts

    def __len__(self) -> int:
        return sum(end - start + 1 for start, end in self.ranges)


@lru_cache(maxsize=32)
def _coverage(path: Path, index: int) -> Coverage:
    """Read the font's Unicode cmap (format 12, else format 4) straight from the file.

    A general font library builds a name for each of Noto Sans CJK's 65,000 glyphs to answer
    this: a third of a second and 35 MB that stayed with the process. This reads the one table
    through mmap: 20 ms, and 2,000 ranges kept. tests/unit/test_kudos_cards.py checks it
    against fontTools on every face.
    """
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        def u16(at: int) -> int:
            return struct.unpack_from(">H", data, at)[0]

        def u32(at: int) -> int:
            return struct.unpack_from(">I", data, at)[0]

        sfnt = u32(12 + 4 * index) if data[:4] == b"ttcf" else 0  # a collection: its index-th font
        tables = {bytes(data[sfnt + 12 + 16 * i:sfnt + 16 + 16 * i]): u32(sfnt + 20 + 16 * i) for i in range(u16(sfnt + 4))}
        cmap = tables[b"cmap"]
        subtables = {}
        for i in range(u16(cmap + 2)):
            platform, encoding, offset = struct.unpack_from(">HHI", data, cmap + 4 + 8 * i)
            subtables[(platform, encoding, u16(cmap + offset))] = cmap + offset
        ranges: list[tuple[int, int]] = []
        full = next((subtables[k] for k in ((3, 10, 12), (0, 4, 12), (0, 6, 12)) if k in subtables), None)
        basic = next((subtables[k] for k in ((3, 1, 4), (0, 3, 4), (3, 0, 4)) if k in subtables), None)
        if full is not None:  # groups of (first, last, first glyph)
            groups = u32(full + 12)
            for first, last, glyph in struct.iter_unpack(">III", data[full + 16:full + 16 + 12 * groups]):
                ranges.append((first + (glyph == 0), last))  # glyph 0 is .notdef: not a glyph
        elif basic is not None:  # segments of the BMP, each mapped by a delta or a glyph array
            segments = u16(basic + 6) // 2
            ends, starts, deltas, offsets = (
                struct.unpack_from(f">{segments}H", data, basic + 14 + 2 * segments * k + (2 if k else 0)) for k in range(4))
            offsets_at = basic + 16 + 6 * segments
            for i in range(segments):
                if starts[i] == 0xFFFF:
                    continue
                for code in range(starts[i], ends[i] + 1):
                    if offsets[i] == 0:
                        glyph = (code + deltas[i]) & 0xFFFF
                    else:
                        glyph = u16(offsets_at + 2 * i + offsets[i] + 2 * (code - starts[i]))
                        glyph = (glyph + deltas[i]) & 0xFFFF if glyph else 0
                    if glyph:
                        ranges.append((code, code))
    merged: list[list[int]] = []
    for first, last in sorted(ranges):
        if first > last:
            continue
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return Coverage(tuple((first, last) for first, last in merged))


def coverage(face: Face, bold: bool = False) -> Coverage:
    """The code points ``face`` has. A Noto family has the same ones in both weights (a unit test
    checks), so only DejaVu's bold is read on its own: reading Noto Sans CJK's 45k-entry cmap
    twice would double a new process's first card's cost."""
    return _coverage(face_path(face, fonts_folder(), bold and face.package is None), face.index)


def coverage_of_file(face: Face, bold: bool) -> Coverage:
    return _coverage(face_path(face, fonts_folder(), bold), face.index)


@lru_cache(maxsize=64)
def load(face: Face, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(face_path(face, fonts_folder(), bold)), size, index=face.index)


def clusters(text: str) -> list[str]:
    return _CLUSTER.findall(text)


# -- bidi ------------------------------------------------------------------------------------------

_PAR = {None: 0x40, False: 0x110, True: 0x111}  # FRIBIDI_PAR_ON (first strong), _LTR, _RTL


@lru_cache(maxsize=1)
def _fribidi():
    name = ctypes.util.find_library("fribidi") or "libfribidi.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.fribidi_log2vis.restype = ctypes.c_int8
    return lib


def levels(text: str, rtl: bool | None = None) -> list[int]:
    """The bidi embedding level of each character (odd: right to left); ``rtl`` None: the
    paragraph's direction is its first strong character's."""
    lib = _fribidi()
    if lib is None or not text:
        return [1 if rtl else 0] * len(text)
    n = len(text)
    chars = (ctypes.c_uint32 * n)(*map(ord, text))
    base = ctypes.c_uint32(_PAR[rtl])
    out = (ctypes.c_int8 * n)()
    if not lib.fribidi_log2vis(chars, n, ctypes.byref(base), None, None, None, out):
        return [1 if rtl else 0] * n
    return list(out)


def isolate(text: str) -> str:
    """``text`` as a bidi isolate when it has right-to-left letters: put in an English sentence
    ("from فاطمة · 29 November", "فاطمة, עדי & Bo"), it stays one unit in its own direction and
    the words around it keep their order."""
    return f"{FSI}{text}{PDI}" if _RTL_LETTER.search(text) else text


def is_rtl(text: str) -> bool:
    """Whether a paragraph reads right to left (its first strong character is RTL)."""
    return bool(text.strip()) and levels(text)[0] % 2 == 1


# -- runs ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    text: str
    face: Face
    level: int
    width: float

    @property
    def rtl(self) -> bool:
        return self.level % 2 == 1


@dataclass(frozen=True)
class TextStyle:
    """A size and weight: every face of shared/fonts at it, in fallback order."""

    size: int
    bold: bool = False

    @property
    def primary(self) -> ImageFont.FreeTypeFont:
        return load(TEXT_FACES[0], self.size, self.bold)

    def missing(self, text: str) -> list[str]:
        """The clusters of ``text`` no face has (each would be drawn as a missing-glyph box)."""
        return [c for c in clusters(text) if not c.isspace() and not _covered(_face_for(c, self.bold, None), c, self.bold)]

    def runs(self, text: str, rtl: bool | None = None) -> list[Run]:
        """``text`` (one line) as runs of one face and one direction, in visual order."""
        return _runs(self, text, rtl)

    def getlength(self, text: str) -> float:
        return _length(self, text)

    def draw(self, canvas: Canvas, x: float, baseline: float, text: str, fill, rtl: bool | None = None,
             align: str = "left") -> float:
        """Draw one line on its baseline; ``align`` right: ``x`` is the right end. Return its width."""
        runs = self.runs(text, rtl)
        total = sum(r.width for r in runs)
        if align == "right":
            x -= total
        for run in runs:
            if run.face is EMOJI:
                _draw_emoji(canvas.image, x, baseline, run.text, self.size)
            else:
                kwargs = {"direction": "rtl" if run.rtl else "ltr", "language": _language(run.text)} if RAQM else {}
                canvas.draw.text((x, baseline), run.text, font=load(run.face, self.size, self.bold), fill=fill,
                                 anchor="ls", **kwargs)
            x += run.width
        return total


class Canvas:
    """An image and its one ImageDraw (text runs are drawn with it, emoji pasted on the image)."""

    def __init__(self, image: Image.Image):
        self.image = image
        self.draw = ImageDraw.Draw(image)


def _covered(face: Face, cluster: str, bold: bool) -> bool:
    have = coverage(face, bold and face is not EMOJI)
    return all(ord(ch) in have or ord(ch) in _IGNORABLE for ch in cluster)


@lru_cache(maxsize=8192)
def _face_for(cluster: str, bold: bool, previous: Face | None) -> Face:
    if _EMOJI.search(cluster) and ord(cluster[0]) in coverage(EMOJI):
        return EMOJI
    if previous is not None and previous is not EMOJI and cluster.isspace() and _covered(previous, cluster, bold):
        return previous  # a space stays in the run it is in (one run, one draw, for "李 小 龍")
    for face in TEXT_FACES:
        if _covered(face, cluster, bold):
            return face
    for face in TEXT_FACES:  # at least the base character, then the marks as they come
        if ord(cluster[0]) in coverage(face, bold):
            return face
    return TEXT_FACES[0]


def _language(text: str) -> str | None:
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    return None


@lru_cache(maxsize=4096)
def _width(style: TextStyle, face: Face, text: str, rtl: bool) -> float:
    if face is EMOJI:
        return sum(_emoji(c)[3] for c in clusters(text)) * style.size / EMOJI_STRIKE
    font = load(face, style.size, style.bold)
    if RAQM:
        return font.getlength(text, direction="rtl" if rtl else "ltr", language=_language(text))
    return font.getlength(text)


@lru_cache(maxsize=8192)
def _length(style: TextStyle, text: str) -> float:
    return sum(run.width for run in _logical_runs(style, text, None))


def _logical_runs(style: TextStyle, text: str, rtl: bool | None) -> list[Run]:
    if text.isascii() and text.isprintable() and not rtl:  # most text: one DejaVu run, left to right
        return [Run(text, TEXT_FACES[0], 0, _width(style, TEXT_FACES[0], text, False))] if text else []
    lv = levels(text, rtl)
    runs: list[Run] = []
    start, face, level, pos = 0, None, None, 0
    pieces: list[tuple[int, int, Face, int]] = []
    for cluster in clusters(text):
        if cluster in _ISOLATES:  # ends the run before it; drawn as nothing
            if face is not None:
                pieces.append((start, pos, face, level))
            pos += len(cluster)
            start, face, level = pos, None, None
            continue
        f = _face_for(cluster, style.bold, face)
        lvl = lv[pos]
        if f is not face or lvl != level:
            if face is not None:
                pieces.append((start, pos, face, level))
            start, face, level = pos, f, lvl
        pos += len(cluster)
    if face is not None:
        pieces.append((start, pos, face, level))
    for a, b, f, lvl in pieces:
        runs.append(Run(text[a:b], f, lvl, _width(style, f, text[a:b], lvl % 2 == 1)))
    return runs


def _runs(style: TextStyle, text: str, rtl: bool | None) -> list[Run]:
    runs = _logical_runs(style, text, rtl)
    if not runs:
        return runs
    # Rule L2: from the highest level down to the lowest odd one, reverse every sequence of
    # runs at that level or higher.
    top = max(r.level for r in runs)
    lowest_odd = min((r.level for r in runs if r.level % 2), default=top + 1)
    for level in range(top, lowest_odd - 1, -1):
        i = 0
        while i < len(runs):
            if runs[i].level >= level:
                j = i
                while j < len(runs) and runs[j].level >= level:
                    j += 1
                runs[i:j] = runs[i:j][::-1]
                i = j
            else:
                i += 1
    return runs


# -- colour emoji -----------------------------------------------------------------------------------

@lru_cache(maxsize=2048)
def _emoji(cluster: str) -> tuple[Image.Image, int, int, float]:
    """The cluster drawn at the emoji font's strike: (RGBA image, left, top from the baseline,
    advance)."""
    font = load(EMOJI, EMOJI_STRIKE)
    left, top, right, bottom = font.getbbox(cluster, anchor="ls")
    image = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((-left, -top), cluster, font=font, anchor="ls", embedded_color=True)
    return image, left, top, font.getlength(cluster)


@lru_cache(maxsize=2048)
def _emoji_scaled(cluster: str, size: int) -> tuple[Image.Image, int, int, float]:
    image, left, top, advance = _emoji(cluster)
    k = size / EMOJI_STRIKE
    scaled = image.resize((max(1, round(image.width * k)), max(1, round(image.height * k))), Image.LANCZOS)
    return scaled, round(left * k), round(top * k), advance * k


def _draw_emoji(image: Image.Image, x: float, baseline: float, text: str, size: int) -> None:
    for cluster in clusters(text):
        glyph, left, top, advance = _emoji_scaled(cluster, size)
        image.paste(glyph, (round(x) + left, round(baseline) + top), glyph)
        x += advance


__all__ = ["Canvas", "Coverage", "FontsMissing", "Run", "TextStyle", "clusters", "coverage", "fonts_folder", "is_rtl", "isolate",
           "levels", "use_fonts"]
