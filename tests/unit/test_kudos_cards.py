"""Kudos cards: PNG shape, determinism, text layout, pixel containment, unsafe text, the disk cache.

The renderer is pure (Pillow + the fonts of shared/fonts: DejaVu Sans, then Noto Sans Thai,
Devanagari, CJK and Noto Color Emoji for what DejaVu lacks), so every test here renders real
PNGs and inspects them with Pillow. The card's text column runs from x=430 to x=1140
(``text_width`` 710 px); the message uses 30 px, the names bold 64..36 px.

Sample cards for people to look at are written to ``tests/artifacts/cards/`` (git-ignored).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from services.recognition.kudos import cards, typeset
from services.recognition.kudos.cards import (
    ELLIPSIS,
    PALETTES,
    CardData,
    CardStore,
    font,
    names_line,
    render_card,
    render_thumbnail,
    wrap,
)
from services.recognition.kudos.domain import clean_text
from shared.fonts import FACES, face_path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GESTURES = ("thanks", "coffee", "lunch", "flowers", "high_five")
TEXT_WIDTH = 1140 - 430  # render_card: left=430, right=WIDTH-60
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "cards"

WORD = "Supercalifragilisticexpialidocious"
LONG_NO_SPACES = (WORD * 15)[:500]  # one 500-character "word" made of a real word repeated
LONG_SINGLE_WORD = "W" * 500  # one 500-character word of the widest Latin glyph
LONG_WORDS_SPACED = ((WORD + " ") * 15)[:500].strip()  # long words that each fit on a line
LONG_SENTENCES = (
    "Thank you for stepping in on the Rotterdam renewal at the very last minute and for "
    "staying late to rebuild the pricing model with the customer on the phone while the "
    "rest of us were still working out who owned which part of the proposal and why the "
    "numbers did not add up at all when we first looked at them together this morning"
)
LONG_NAME = "Maximiliana Rodríguez-Santiago"  # 30 characters
TEN_NAMES = (
    "Ana Lopez", "Bo Smith", "Cyrus Cooper", "Dee Nguyen", "Eli Jansen",
    "Fay Wong", "Gus Peterson", "Hal Brown", "Ivy Martinez", "Jo King",
)


def make_card(**changes) -> CardData:
    base = CardData(
        giver_name="Priya Raman",
        recipient_names=("Ana Lopez",),
        message="Thanks for jumping on the Acme call and saving the renewal!",
        values=("customer_first", "teamwork"),
        gesture="thanks",
        date="27 November 2026",
    )
    return dataclasses.replace(base, **changes)


def open_png(data: bytes) -> Image.Image:
    assert data[:8] == PNG_SIGNATURE
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


# -- shape, determinism, digest -------------------------------------------------------------------

def test_the_palettes_are_exactly_the_five_gestures():
    assert sorted(PALETTES) == sorted(GESTURES)


@pytest.mark.parametrize("gesture", GESTURES)
def test_every_gesture_renders_a_1200x630_rgb_png_with_its_gradient(gesture):
    image = open_png(render_card(make_card(gesture=gesture)))
    assert image.size == (1200, 630)
    assert image.mode == "RGB"
    palette = PALETTES[gesture]
    # The background is a vertical gradient from the palette's top to its bottom colour.
    assert image.getpixel((1199, 0)) == palette.top
    assert image.getpixel((1199, 629)) == palette.bottom


@pytest.mark.parametrize("gesture", GESTURES)
def test_every_gesture_thumbnail_is_400x210_rgb(gesture):
    thumb = open_png(render_thumbnail(render_card(make_card(gesture=gesture))))
    assert thumb.size == (400, 210)
    assert thumb.mode == "RGB"


def test_the_gestures_look_different_from_each_other():
    rendered = {g: render_card(make_card(gesture=g)) for g in GESTURES}
    assert len(set(rendered.values())) == len(GESTURES)


def test_an_unknown_gesture_draws_the_thanks_card():
    assert render_card(make_card(gesture="hug")) == render_card(make_card(gesture="thanks"))


def test_the_same_card_gives_the_same_bytes_even_with_cold_caches():
    card = make_card(message=LONG_SENTENCES, recipient_names=TEN_NAMES)
    first = render_card(card)
    second = render_card(card)
    cards._gradient.cache_clear()
    cards._art_cached.cache_clear()
    third = render_card(card)
    assert first == second == third
    thumb = render_thumbnail(first)
    assert render_thumbnail(third) == thumb


def test_a_different_message_gives_different_bytes():
    a = render_card(make_card(message="Thanks for the help!"))
    b = render_card(make_card(message="Thanks for the help?"))
    assert a != b
    assert render_thumbnail(a) != render_thumbnail(b)


def test_digest_is_stable_and_twenty_hex_characters():
    card = make_card()
    digest = card.digest()
    assert digest == make_card().digest()
    assert len(digest) == 20
    assert int(digest, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"giver_name": "Priya R."},
        {"recipient_names": ("Ana Lopez", "Bo Smith")},
        {"recipient_names": ("Ana  Lopez",)},
        {"message": "Thanks for jumping on the Acme call and saving the renewal."},
        {"values": ("customer_first",)},
        {"values": ("teamwork", "customer_first")},
        {"values": ()},
        {"gesture": "coffee"},
        {"date": "28 November 2026"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_digest_changes_when_any_field_changes(change):
    assert make_card(**change).digest() != make_card().digest()


def test_digest_depends_on_the_order_of_recipients():
    a = make_card(recipient_names=("Ana", "Bo"))
    b = make_card(recipient_names=("Bo", "Ana"))
    assert a.digest() != b.digest()


# -- text layout: wrap ----------------------------------------------------------------------------

MESSAGE_FONT = font(30)


@pytest.mark.parametrize("max_lines", [6, 5])
@pytest.mark.parametrize(
    "message",
    [LONG_NO_SPACES, LONG_SINGLE_WORD, LONG_WORDS_SPACED, LONG_SENTENCES, "x" * 500],
    ids=["repeated-no-spaces", "single-W-word", "long-words-spaced", "sentences", "single-x-word"],
)
def test_wrap_keeps_every_line_inside_the_width_and_the_line_limit(message, max_lines):
    lines = wrap(message, MESSAGE_FONT, TEXT_WIDTH, max_lines)
    assert len(lines) == max_lines  # all of these are far longer than the space available
    for line in lines:
        assert line, "no empty line in the middle of a single paragraph"
        assert MESSAGE_FONT.getlength(line) <= TEXT_WIDTH, line
    assert lines[-1].endswith(ELLIPSIS)
    assert sum(line.count(ELLIPSIS) for line in lines) == 1


@pytest.mark.parametrize("message", [LONG_NO_SPACES, LONG_SINGLE_WORD, "x" * 500])
def test_wrap_cuts_an_unbreakable_word_into_consecutive_pieces(message):
    lines = wrap(message, MESSAGE_FONT, TEXT_WIDTH, 6)
    shown = "".join(lines)[: -len(ELLIPSIS)]
    assert message.startswith(shown)  # nothing dropped or repeated before the ellipsis
    assert len(shown) >= 120  # the lines are used, not left nearly empty (W: 23 a line)
    used = 0
    for line in lines[:-1]:
        # Each piece is as long as fits: one more character would overflow.
        used += len(line)
        assert MESSAGE_FONT.getlength(line + message[used]) > TEXT_WIDTH


@pytest.mark.parametrize("message", [LONG_WORDS_SPACED, LONG_SENTENCES])
def test_wrap_trims_at_a_word_boundary_when_the_text_has_spaces(message):
    words = message.split()
    lines = wrap(message, MESSAGE_FONT, TEXT_WIDTH, 6)
    last = lines[-1]
    assert last.endswith(ELLIPSIS)
    assert not last[: -len(ELLIPSIS)].endswith(" ")
    shown = " ".join(lines)[: -len(ELLIPSIS)].split()
    # Whole words only, in order, and some were left out.
    assert shown == words[: len(shown)]
    assert 0 < len(shown) < len(words)


def test_wrap_long_spaced_words_one_per_line():
    lines = wrap(LONG_WORDS_SPACED, MESSAGE_FONT, TEXT_WIDTH, 6)
    assert lines == [WORD] * 5 + [WORD + ELLIPSIS]


def test_wrap_leaves_short_text_alone_and_keeps_paragraphs():
    assert wrap("Thanks for the help!", MESSAGE_FONT, TEXT_WIDTH, 6) == ["Thanks for the help!"]
    assert wrap("Line one\nLine two", MESSAGE_FONT, TEXT_WIDTH, 6) == ["Line one", "Line two"]
    assert wrap("  spaced   out  ", MESSAGE_FONT, TEXT_WIDTH, 6) == ["spaced out"]
    assert wrap("", MESSAGE_FONT, TEXT_WIDTH, 6) == []


def test_wrap_trims_after_blank_lines_with_an_ellipsis():
    assert wrap("a\n\n\n\n\nb\nc", MESSAGE_FONT, TEXT_WIDTH, 6) == ["a", "", "", "", "", "b" + ELLIPSIS]


def test_wrap_never_drops_text_without_an_ellipsis():
    lines = wrap("a\n\n\n\n\n\n\nb", MESSAGE_FONT, TEXT_WIDTH, 6)
    assert "b" in "".join(lines) or lines[-1].endswith(ELLIPSIS)


# -- text layout: names_line ----------------------------------------------------------------------

NAMES_FONT = font(36, bold=True)


def test_names_line_joins_short_lists():
    assert names_line(("Ana",), NAMES_FONT, 700) == "Ana"
    assert names_line(("Ana", "Bo"), NAMES_FONT, 700) == "Ana & Bo"
    assert names_line(("Ana", "Bo", "Cy"), NAMES_FONT, 700) == "Ana, Bo & Cy"
    assert names_line((" Ana ", "  ", "Bo"), NAMES_FONT, 700) == "Ana & Bo"
    assert names_line(("  ",), NAMES_FONT, 700) == "you"
    assert names_line((), NAMES_FONT, 700) == "you"


def test_names_line_counts_the_others_when_names_do_not_fit():
    names = ("Ana", "Bo", "Cy", "Di", "Ed", "Flo", "Gus")
    line = names_line(names, NAMES_FONT, 400)
    assert line == "Ana, Bo & 5 others"
    assert NAMES_FONT.getlength(line) <= 400
    narrow = NAMES_FONT.getlength("Ana & 1 other")
    assert names_line(("Ana", "Bartholomew"), NAMES_FONT, narrow) == "Ana & 1 other"


def test_names_line_ten_recipients_on_the_card():
    line = names_line(TEN_NAMES, NAMES_FONT, TEXT_WIDTH)
    assert line == "Ana Lopez, Bo Smith & 8 others"
    assert NAMES_FONT.getlength(line) <= TEXT_WIDTH


@pytest.mark.parametrize("size", [64, 56, 48, 42, 36])
@pytest.mark.parametrize(
    "names",
    [(LONG_NAME,), (LONG_NAME,) + TEN_NAMES[:9], TEN_NAMES, ("W" * 30,), ("W" * 30,) * 10],
    ids=["one-long", "long-plus-nine", "ten", "one-W30", "ten-W30"],
)
def test_names_line_always_fits(names, size):
    f = font(size, bold=True)
    line = names_line(names, f, TEXT_WIDTH)
    assert line
    assert f.getlength(line) <= TEXT_WIDTH


def test_names_line_keeps_the_count_when_the_first_name_is_long():
    line = names_line((LONG_NAME,) + TEN_NAMES[:9], NAMES_FONT, TEXT_WIDTH)
    assert "9 others" in line
    assert NAMES_FONT.getlength(line) <= TEXT_WIDTH


# -- pixels: nothing bleeds off the right edge ----------------------------------------------------

def _nonuniform_rows(image: Image.Image, x0: int, x1: int, y0: int, y1: int) -> list[int]:
    """Rows in [y0, y1) whose pixels in [x0, x1) are not all the same colour (tolerance 0)."""
    band = image.crop((x0, y0, x1, y1))
    raw = band.tobytes()
    width = (x1 - x0) * 3
    rows = []
    for i in range(y1 - y0):
        row = raw[i * width:(i + 1) * width]
        if row != row[:3] * (x1 - x0):
            rows.append(y0 + i)
    return rows


@pytest.mark.parametrize(
    "message",
    [LONG_NO_SPACES, LONG_SINGLE_WORD, LONG_WORDS_SPACED, LONG_SENTENCES],
    ids=["repeated-no-spaces", "single-W-word", "long-words-spaced", "sentences"],
)
@pytest.mark.parametrize("values", [(), ("customer_first", "teamwork")], ids=["no-values", "values"])
def test_long_text_does_not_bleed_into_the_right_margin(message, values):
    card = make_card(
        message=message,
        recipient_names=(LONG_NAME,) + TEN_NAMES[:9],
        giver_name="Bartholomew Featherstonehaugh-Wolfeschlegel",
        values=values,
    )
    image = open_png(render_card(card))
    assert _nonuniform_rows(image, 1160, 1200, 80, 460) == []


def test_the_margin_check_sees_text_that_reaches_the_edge_of_the_column():
    # Control for the test above: the wide message does fill the column up to x~1140, so an
    # overflow of even a few pixels past 1160 would show up as a non-uniform row.
    image = open_png(render_card(make_card(message=LONG_SINGLE_WORD, recipient_names=("W" * 30,))))
    assert len(_nonuniform_rows(image, 1100, 1141, 205, 460)) > 50  # the message lines
    assert len(_nonuniform_rows(image, 1050, 1141, 100, 160)) > 10  # the names line ("WWW…", 671 px)
    # And the background alone is uniform per row in the band.
    gradient = cards._gradient(PALETTES["thanks"])
    assert _nonuniform_rows(gradient, 1100, 1200, 0, 630) == []


# -- safety: unsafe and unusual characters -------------------------------------------------------

NASTY = (
    "Hi\x00 there \x07\x1b[31m red \u202eevil\u202c \u200f\u200e\u200b\u200c\u200d\ufeff "
    "\u2066iso\u2069 \u061c emoji 🎉👍🏽👨\u200d👩\u200d👧 flags 🇳🇱 \t tab \r\n crlf \x85 nel \u2028 ls \u2029 ps"
)
NASTY_NAME = "\u202eAna\u202c \x00Lo\x07pez 🎉\u200f\u200b"


def test_clean_text_removes_the_unsafe_characters_used_here():
    cleaned = clean_text(NASTY)
    for ch in "\x00\x07\x1b\u202e\u202c\u200f\u200e\u2066\u2069\r\t\x85":
        assert ch not in cleaned
    assert "🎉" in cleaned and "\n" in cleaned


@pytest.mark.parametrize("gesture", GESTURES)
def test_unsafe_text_straight_into_the_renderer_still_renders(gesture):
    card = make_card(
        gesture=gesture,
        message=NASTY,
        recipient_names=(NASTY_NAME, "\x00", "🎉🎉🎉", "\u202e\u202e\u202e", "עדי כהן", "李小龙"),
        giver_name=NASTY_NAME,
        values=("team\x00work", "\u202eowner"),
    )
    image = open_png(render_card(card))
    assert image.size == (1200, 630) and image.mode == "RGB"
    assert open_png(render_thumbnail(render_card(card))).size == (400, 210)


def test_cleaned_unsafe_text_renders():
    card = make_card(
        message=clean_text(NASTY),
        recipient_names=(clean_text(NASTY_NAME), clean_text("\x00\u202e")),
        giver_name=clean_text(NASTY_NAME),
    )
    image = open_png(render_card(card))
    assert image.size == (1200, 630)


def test_a_message_of_only_invisible_characters_renders():
    image = open_png(render_card(make_card(message="\u202e\u200b\x00\ufeff", recipient_names=("\u200b",))))
    assert image.size == (1200, 630)


@pytest.mark.parametrize("name", ["Ana\nLopez", "Ana\rLopez", "Ana\u2029Lopez"], ids=["LF", "CR", "PS"])
def test_a_line_break_in_a_recipient_name_still_renders(name):
    image = open_png(render_card(make_card(recipient_names=(name,))))
    assert image.size == (1200, 630)


def test_a_cleaned_giver_name_with_a_newline_still_renders():
    image = open_png(render_card(make_card(giver_name=clean_text("Priya\nRaman"))))
    assert image.size == (1200, 630)


# -- oversized text straight into the renderer -----------------------------------------------------
# The API refuses messages over 500 characters and the directory names over 200; the renderer
# must still be safe and quick with anything (old data, another caller).

HUGE = {
    "10k-word": "W" * 10_000,
    "10k-emoji": "🎉👨\u200d👩\u200d👧" * 2_000,
    "10k-rtl": "שלום עולם " * 1_000,
    "10k-lines": "a\n" * 5_000,
    "combining-marks": "Th" + "\u0301\u0316\u0330" * 300 + "anks",
}


@pytest.mark.parametrize("message", list(HUGE.values()), ids=list(HUGE))
def test_ten_thousand_characters_render_inside_the_card(message):
    card = make_card(message=message, recipient_names=("W" * 10_000,) * 10, giver_name="G " * 5_000)
    image = open_png(render_card(card))
    assert image.size == (1200, 630) and image.mode == "RGB"
    assert _nonuniform_rows(image, 1160, 1200, 80, 460) == []


def test_a_long_word_is_cut_with_few_measurements(monkeypatch):
    """Cutting a 10,000-character word measured every prefix of every piece (15 s a card);
    now only the pieces that show, each found by a binary search."""
    widths: list[int] = []
    real = cards._width
    monkeypatch.setattr(cards, "_width", lambda text, f: widths.append(len(text)) or real(text, f))
    lines = wrap("W" * 10_000, font(30), 710, 6)
    assert len(lines) == 6 and lines[-1].endswith(ELLIPSIS)
    assert all(real(line, font(30)) <= 710 for line in lines)
    assert len(widths) < 200 and sum(widths) < 300_000, (len(widths), sum(widths))


# -- CardStore --------------------------------------------------------------------------------------

def _raise_after_first(monkeypatch, name: str) -> list[int]:
    real = getattr(cards, name)
    calls: list[int] = []

    def once(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise AssertionError(f"{name} called again: the cache was not used")
        return real(*args, **kwargs)

    monkeypatch.setattr(cards, name, once)
    return calls


def test_card_store_renders_once_then_serves_from_disk(tmp_path, monkeypatch):
    folder = tmp_path / "cards"  # does not exist yet
    store = CardStore(folder)
    card = make_card(message=LONG_SENTENCES)
    digest = card.digest()
    calls = _raise_after_first(monkeypatch, "render_card")

    data, etag = store.get("k_123", card)
    assert calls == [1]
    assert etag == f'"{digest}"'
    assert sorted(p.name for p in folder.iterdir()) == [f"k_123-{digest}.png"]
    assert (folder / f"k_123-{digest}.png").read_bytes() == data
    assert open_png(data).size == (1200, 630)

    again, etag2 = store.get("k_123", card)
    assert calls == [1]
    assert again == data and etag2 == etag

    # A fresh store on the same folder (a restarted process) also reads the file.
    assert CardStore(folder).get("k_123", card) == (data, etag)
    assert calls == [1]
    monkeypatch.undo()
    assert data == render_card(card)


def test_card_store_thumbnail_uses_the_cached_full_card(tmp_path, monkeypatch):
    store = CardStore(tmp_path)
    card = make_card(gesture="coffee")
    digest = card.digest()
    full, full_etag = store.get("k_1", card)

    calls = _raise_after_first(monkeypatch, "render_card")
    calls.append(1)  # any render_card call from now on raises
    thumb, thumb_etag = store.get("k_1", card, thumbnail=True)
    assert thumb_etag == f'"{digest}-t"'
    assert thumb_etag != full_etag
    assert open_png(thumb).size == (400, 210)
    assert thumb == render_thumbnail(full)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"k_1-{digest}.png", f"k_1-{digest}.thumb.png"]

    thumb_calls = _raise_after_first(monkeypatch, "render_thumbnail")
    thumb_calls.append(1)
    assert store.get("k_1", card, thumbnail=True) == (thumb, thumb_etag)
    assert store.get("k_1", card) == (full, full_etag)


def test_card_store_thumbnail_first_renders_and_stores_both(tmp_path, monkeypatch):
    store = CardStore(tmp_path)
    card = make_card(gesture="lunch")
    digest = card.digest()
    calls = _raise_after_first(monkeypatch, "render_card")
    thumb, etag = store.get("k_2", card, thumbnail=True)
    assert calls == [1]
    assert etag == f'"{digest}-t"'
    assert open_png(thumb).size == (400, 210)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"k_2-{digest}.png", f"k_2-{digest}.thumb.png"]
    full, full_etag = store.get("k_2", card)
    assert calls == [1]
    assert full_etag == f'"{digest}"' and open_png(full).size == (1200, 630)


def test_card_store_renders_again_when_the_content_changes(tmp_path, monkeypatch):
    store = CardStore(tmp_path)
    calls: list[CardData] = []
    real = cards.render_card

    def counting(card):
        calls.append(card)
        return real(card)

    monkeypatch.setattr(cards, "render_card", counting)
    a, etag_a = store.get("k_3", make_card())
    b, etag_b = store.get("k_3", make_card(message="A different message"))
    assert len(calls) == 2
    assert a != b and etag_a != etag_b
    assert len(list(tmp_path.glob("k_3-*.png"))) == 2
    assert list(tmp_path.glob("*.tmp")) == []


# -- sample cards for people to look at -----------------------------------------------------------

def test_write_sample_cards_for_review():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    samples = {
        f"gesture-{g}": make_card(
            gesture=g,
            recipient_names=("Ana Lopez", "Bo Smith"),
            message="Thanks for jumping on the Acme call at 8 in the morning and saving the renewal. "
            "The customer said it was the best support call they have had all year!",
        )
        for g in GESTURES
    }
    samples["long-message"] = make_card(
        gesture="flowers", message=LONG_SENTENCES + " " + LONG_SENTENCES, recipient_names=(LONG_NAME,),
        giver_name="Bartholomew Featherstonehaugh-Wolfeschlegel",
    )
    samples["long-unbroken-word"] = make_card(gesture="coffee", message=LONG_NO_SPACES, recipient_names=(LONG_NAME,))
    samples["many-recipients"] = make_card(
        gesture="high_five", recipient_names=TEN_NAMES,
        values=("customer_first", "teamwork", "ownership", "bias_for_action", "keep_it_simple"),
    )
    samples["long-name-many-recipients"] = make_card(
        gesture="lunch", recipient_names=(LONG_NAME,) + TEN_NAMES[:9], message=LONG_WORDS_SPACED,
    )
    samples["unsafe-text"] = make_card(message=NASTY, recipient_names=(NASTY_NAME, "李小龙"), giver_name=NASTY_NAME)
    for name, card in samples.items():
        data = render_card(card)
        (ARTIFACTS / f"{name}.png").write_bytes(data)
        (ARTIFACTS / f"{name}.thumb.png").write_bytes(render_thumbnail(data))
    for name in samples:
        assert open_png((ARTIFACTS / f"{name}.png").read_bytes()).size == (1200, 630)
        assert open_png((ARTIFACTS / f"{name}.thumb.png").read_bytes()).size == (400, 210)


# -- every script: fallback fonts, no missing-glyph boxes, bidi, wrapping -------------------------
# Names and messages a person can type (issue 23). Each is checked twice: every grapheme cluster
# has a face whose cmap has all its characters, and on the rendered card every drawn cluster is
# not its font's missing-glyph (.notdef) box.

SCRIPTS = {
    "latin-diacritics": ("Zoë Ångström-Núñez", "Merci beaucoup, ça a sauvé l'affaire! Dziękuję, Łukasz. Đặng Thị Hương"),
    "cyrillic": ("Дмитрий Иванов", "Спасибо за помощь с контрактом!"),
    "greek": ("Ζωή Παπαδοπούλου", "Ευχαριστώ πολύ για τη βοήθεια!"),
    "arabic": ("فاطمة الزهراء", "شكراً جزيلاً على مراجعة العقد"),
    "hebrew": ("עדי כהן", "תודה רבה על העזרה עם החוזה"),
    "rtl-mixed-with-ltr": ("李小龍 Li", "🎉 شكراً! 谢谢你 for the contract review 🙏☕"),
    "chinese": ("李小龍", "谢谢你的帮助，我们赢了这个合同。"),
    "japanese": ("佐藤 さくら", "ありがとうございます！契約のレビュー、本当に助かりました。"),
    "korean": ("김민준", "계약 검토를 도와주셔서 정말 감사합니다"),
    "devanagari": ("अनन्या शर्मा", "अनुबंध की समीक्षा के लिए बहुत धन्यवाद"),
    "thai": ("สมชาย ใจดี", "ขอบคุณมากสำหรับการตรวจสอบสัญญา"),
    "emoji": ("Sam 👩\u200d💻", "👍🏽 👩\u200d💻 👨\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 🇳🇱 🇯🇵 1️⃣ ☕ 🙏🏿 🎉"),
}
ISSUE_CARD = make_card(  # the card of issue 23, as it was reported
    giver_name="李小龍 Li", recipient_names=("فاطمة الزهراء",), gesture="coffee",
    message="🎉 شكراً! 谢谢你 for the contract review 🙏☕",
)
NO_FACE_HAS = "\U0001D800"  # Sutton SignWriting: none of our faces has it
STYLES = [font(30), font(24), font(22, bold=True)] + [font(size, bold=True) for size in (64, 56, 48, 42, 36)]


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_every_listed_script_has_a_face_for_every_cluster(script):
    for text in SCRIPTS[script]:
        for style in STYLES:
            assert style.missing(text) == [], (script, style, text)


def test_the_coverage_check_sees_a_character_no_face_has():
    assert font(30).missing(f"ok {NO_FACE_HAS} ok") == [NO_FACE_HAS]


class DrawnText:
    """Records every text run and emoji a card draws, with the font it was drawn with."""

    def __init__(self, monkeypatch):
        self.runs: list[tuple[str, object]] = []
        self.emoji: list[str] = []
        real_text, real_emoji = ImageDraw.ImageDraw.text, typeset._draw_emoji

        def text(draw, xy, content, *args, **kwargs):
            self.runs.append((content, kwargs["font"]))
            return real_text(draw, xy, content, *args, **kwargs)

        def emoji(image, x, baseline, content, size):
            self.emoji.extend(typeset.clusters(content))
            return real_emoji(image, x, baseline, content, size)

        monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
        monkeypatch.setattr(typeset, "_draw_emoji", emoji)

    def boxes(self) -> list[str]:
        """The clusters drawn as their font's missing-glyph box (or, for emoji, not as one glyph)."""
        found = []
        for content, f in self.runs:
            notdef = f.getmask(NO_FACE_HAS)
            for cluster in typeset.clusters(content):
                if cluster.strip():
                    mask = f.getmask(cluster)
                    if mask.size == notdef.size and bytes(mask) == bytes(notdef):
                        found.append(cluster)
        one_emoji = typeset._emoji("🎉")[3]
        for cluster in self.emoji:
            image, _, _, advance = typeset._emoji(cluster)
            # One glyph, one advance: a ZWJ sequence or a flag the font lacks would be drawn as
            # its parts side by side (two advances or more).
            if advance != one_emoji or image.getbbox() is None:
                found.append(cluster)
        return found


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_no_missing_glyph_box_is_drawn_on_the_card(script, monkeypatch):
    name, message = SCRIPTS[script]
    drawn = DrawnText(monkeypatch)
    card = make_card(giver_name=name, recipient_names=(name, "Ana"), message=message)
    image = open_png(render_card(card))
    assert image.size == (1200, 630)
    assert drawn.runs and drawn.boxes() == [], drawn.boxes()
    shown = "".join(text for text, _ in drawn.runs) + "".join(drawn.emoji)
    for cluster in typeset.clusters(name + message):  # every cluster was drawn (none dropped)
        assert cluster.isspace() or cluster in shown, cluster


def test_the_issue_card_draws_every_character_in_colour(monkeypatch):
    drawn = DrawnText(monkeypatch)
    image = open_png(render_card(ISSUE_CARD))
    assert drawn.boxes() == []
    assert sorted(drawn.emoji) == sorted(["🎉", "🙏", "☕"])  # ☕ too: the colour cup, not DejaVu's outline
    assert {f.getname()[0] for text, f in drawn.runs if "李" in text or "谢" in text} == {"Noto Sans CJK SC"}
    # Colour, not grey: the emoji are drawn from the colour bitmaps (saturated pixels in the text area).
    raw = image.crop((430, 190, 1140, 260)).tobytes()
    saturated = sum(1 for i in range(0, len(raw), 3) if max(raw[i:i + 3]) - min(raw[i:i + 3]) > 120)
    assert saturated > 200


def test_the_box_check_sees_a_box_when_one_is_drawn(monkeypatch):
    drawn = DrawnText(monkeypatch)
    render_card(make_card(message=f"Thanks {NO_FACE_HAS} for the help"))
    assert drawn.boxes() == [NO_FACE_HAS]


def test_a_name_in_cjk_is_drawn_with_the_cjk_face_and_bold():
    runs = font(64, bold=True).runs("李小龍 Li")
    assert [(r.text, r.face.key) for r in runs] == [("李小龍 ", "cjk"), ("Li", "latin")]


def test_right_to_left_runs_are_put_in_visual_order():
    style = font(30)
    ltr = style.runs("abc שלום def", rtl=False)
    assert [(r.text, r.rtl) for r in ltr] == [("abc ", False), ("שלום", True), (" def", False)]
    rtl = style.runs("שלום abc", rtl=None)  # the paragraph starts right to left
    assert [(r.text, r.rtl) for r in rtl] == [("abc", False), ("שלום ", True)]
    assert typeset.is_rtl("שלום abc") and not typeset.is_rtl("abc שלום") and not typeset.is_rtl("")
    # Emoji, CJK and Arabic in one right-to-left paragraph: runs of one face and one direction.
    issue = style.runs(ISSUE_CARD.message)
    assert {r.face.key for r in issue} == {"emoji", "latin", "cjk"}
    assert issue[-1].text == "🎉"  # the first character of an RTL paragraph ends up rightmost


def _ink_columns(image: Image.Image, y0: int, y1: int, x0: int, x1: int) -> list[int]:
    """Columns where something was drawn over the (thanks) background gradient."""
    box = (x0, y0, x1, y1)
    diff = ImageChops.difference(image.crop(box), cards._gradient(PALETTES["thanks"]).crop(box)).convert("L")
    return [x0 + x for x in range(diff.width) if diff.crop((x, 0, x + 1, diff.height)).getbbox() is not None]


def test_a_right_to_left_message_is_set_flush_right():
    image = open_png(render_card(make_card(message="תודה רבה", values=())))
    ink = _ink_columns(image, 205, 250, 430, 1141)
    assert ink and min(ink) > 900 and max(ink) > 1120
    ltr = open_png(render_card(make_card(message="Thanks a lot", values=())))
    ink = _ink_columns(ltr, 205, 250, 430, 1141)
    assert ink and min(ink) < 440 and max(ink) < 700


CHINESE = "谢谢你的帮助，我们赢了这个合同。客户非常满意，下个季度还会续约。" * 4


def _consumed(lines: list[str]) -> str:
    text = "".join(lines)
    return text[: -len(ELLIPSIS)] if text.endswith(ELLIPSIS) else text


def test_cjk_wraps_between_characters_and_fills_its_lines():
    lines = wrap(CHINESE, MESSAGE_FONT, TEXT_WIDTH, 4)
    assert len(lines) == 4 and lines[-1].endswith(ELLIPSIS)
    assert CHINESE.startswith(_consumed(lines))  # in order, nothing dropped, no spaces added
    one = MESSAGE_FONT.getlength("谢")
    for line in lines:
        assert MESSAGE_FONT.getlength(line) <= TEXT_WIDTH
        assert not line.startswith(("，", "。")), line  # no line starts with closing punctuation
    for line in lines[:-1]:
        assert MESSAGE_FONT.getlength(line) > TEXT_WIDTH - 2 * one  # full, not broken at a "word"


@pytest.mark.parametrize(
    "text",
    ["ขอบคุณมากสำหรับการตรวจสอบสัญญา" * 12, "👨\u200d👩\u200d👧\u200d👦👍🏽🇳🇱" * 60, "अनुबंधकीसमीक्षा" * 20, "Th\u0301\u0316anks" * 80],
    ids=["thai", "emoji-families", "devanagari", "combining-marks"],
)
def test_an_unspaced_run_is_cut_between_grapheme_clusters(text):
    lines = wrap(text, MESSAGE_FONT, TEXT_WIDTH, 4)
    assert len(lines) == 4 and lines[-1].endswith(ELLIPSIS)
    boundaries, pos = set(), 0
    for cluster in typeset.clusters(text):
        pos += len(cluster)
        boundaries.add(pos)
    consumed = 0
    for line in lines:
        body = line[: -len(ELLIPSIS)] if line.endswith(ELLIPSIS) else line
        assert text[consumed:].startswith(body)
        consumed += len(body)
        assert consumed in boundaries, (line, "cut inside a grapheme cluster")
        assert MESSAGE_FONT.getlength(line) <= TEXT_WIDTH


def test_words_of_scripts_with_spaces_are_not_split():
    text = "계약 검토를 도와주셔서 정말 감사합니다 " * 8 + "שלום עולם ומה שלומך היום " * 6
    words = text.split()
    lines = wrap(text, MESSAGE_FONT, TEXT_WIDTH, 6)
    shown = " ".join(lines)[: -len(ELLIPSIS)].split()
    assert shown == words[: len(shown)] and 0 < len(shown) < len(words)


def test_names_in_any_script_fit_and_keep_the_count():
    names = tuple(name for name, _ in SCRIPTS.values())
    for size in (64, 36):
        f = font(size, bold=True)
        line = names_line(names, f, TEXT_WIDTH)
        assert f.getlength(line) <= TEXT_WIDTH and " others" in line
    long_cjk = ("李" * 80,) + names[:3]
    line = names_line(long_cjk, NAMES_FONT, TEXT_WIDTH)
    assert line.endswith(" & 3 others") and ELLIPSIS in line and NAMES_FONT.getlength(line) <= TEXT_WIDTH


def test_emoji_joiners_survive_cleaning_and_loose_ones_do_not():
    assert clean_text("👩\u200d💻 🏳️\u200d🌈") == "👩\u200d💻 🏳️\u200d🌈"
    assert clean_text("می\u200cخواهم") == "می\u200cخواهم"  # Persian needs its ZWNJ
    assert clean_text("\u200dThanks \u200d you\u200d\u200c!\u200d") == "Thanks  you!"


def test_write_international_sample_cards_for_review():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    samples = {"issue-23": ISSUE_CARD}
    for (script, (name, message)), gesture in zip(SCRIPTS.items(), GESTURES * 3):
        samples[f"script-{script}"] = make_card(gesture=gesture, giver_name=name, recipient_names=(name,), message=message)
    for name, card in samples.items():
        data = render_card(card)
        (ARTIFACTS / f"{name}.png").write_bytes(data)
        (ARTIFACTS / f"{name}.thumb.png").write_bytes(render_thumbnail(data))
        assert open_png(data).size == (1200, 630)


def test_a_right_to_left_name_in_an_english_line_keeps_the_words_around_it_in_order():
    style = font(24)
    footer = f"from {typeset.isolate('עדי כהן')}  ·  27 November 2026"
    assert [(r.text, r.rtl) for r in style.runs(footer, rtl=False)] == [
        ("from ", False), ("עדי כהן", True), ("  ·  27 November 2026", False)]
    names = names_line(("فاطمة", "עדי", "Bo"), NAMES_FONT, TEXT_WIDTH)
    assert [r.text for r in NAMES_FONT.runs(names, rtl=False)] == ["فاطمة", ", ", "עדי", " & Bo"]


@pytest.mark.parametrize("face", [f for f in FACES if f.package and f.bold], ids=lambda f: f.key)
def test_a_fetched_family_has_the_same_characters_in_both_weights(face):
    # typeset.coverage reads only the regular file of a fetched family, for both weights.
    assert typeset.coverage_of_file(face, bold=True) == typeset.coverage_of_file(face, bold=False)


@pytest.mark.parametrize("giver", ["Zoë Ångström-Núñez", "Bartholomew Featherstonehaugh-Wolfeschlegel", "李" * 60, "فاطمة " * 20],
                         ids=["latin", "long-latin", "long-cjk", "long-arabic"])
def test_the_footer_never_runs_into_the_brand(giver):
    assert font(20, bold=True).getlength(cards.BRAND) <= cards.BRAND_WIDTH
    image = open_png(render_card(make_card(giver_name=giver, values=())))
    head = _ink_columns(image, 560, 600, 430, 1141)
    brand_left = 1140 - cards.BRAND_WIDTH
    assert [x for x in head if brand_left - 20 < x < brand_left] == []  # a gap before the brand


@pytest.mark.parametrize("face", FACES, ids=lambda f: f.key)
@pytest.mark.parametrize("bold", [False, True], ids=["regular", "bold"])
def test_the_cmap_reader_agrees_with_fonttools(face, bold):
    from fontTools.ttLib import TTFont

    if bold and not face.bold:
        pytest.skip("one weight")
    path = face_path(face, typeset.fonts_folder(), bold)
    with TTFont(str(path), fontNumber=face.index, lazy=True) as ttf:
        expected = set(ttf.getBestCmap())
    ranges = typeset._coverage(path, face.index).ranges
    assert {code for first, last in ranges for code in range(first, last + 1)} == expected
