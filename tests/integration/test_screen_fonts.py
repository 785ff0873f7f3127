"""The TV screen shows every name in Debian's Chromium: the gateway serves the card fonts as web
fonts (shared/fonts), and no name is drawn as missing-glyph boxes.

Only the gateway runs (no Kafka, no services: the board is put on the page with the page's own
``render``), so the test is about fonts, not data; the live path is test_gateway.py's.
How a box is seen: Chromium draws a character no font has as the primary font's .notdef box,
the same box for every such character. Each grapheme of each name, and each of its characters
alone, is drawn on a canvas with the page's own font stack and compared with a character no face
has; a control checks that such a character is indeed caught. Served from an empty font folder,
the same check finds the CJK, Thai, Devanagari and emoji names' boxes (tried by hand).
"""

from __future__ import annotations

import base64
import io
import json

import pytest
import requests as http
from PIL import Image

from services.gateway.app import create_app
from services.recognition.kudos.cards import CardData, render_card
from services.gateway.config import GatewaySettings
from shared.config import PROJECT_ROOT, load_settings
from shared.fonts import FACES, files
from tests.integration.browser import chromium_path, open_page
from tests.integration.service_helpers import serving

NOWHERE = "http://127.0.0.1:1"  # no service answers: the page shows what it is given
NAMES = {
    "chinese": "李小龍 Li",
    "arabic": "فاطمة الزهراء",
    "hebrew": "עדי כהן",
    "japanese": "佐藤 さくら",
    "korean": "김민준",
    "thai": "สมชาย ใจดี",
    "devanagari": "अनन्या शर्मा",
    "greek-cyrillic": "Ζωή Иванова",
    "latin": "Zoë Ångström-Núñez",
    "emoji": "Sam 👩\u200d💻🇳🇱👍🏽",
}
MESSAGE = "🎉 شكراً! 谢谢你 for the contract review 🙏☕"  # the card of issue 23, shown as the latest kudos
NO_FACE_HAS = "\U0001D800"  # Sutton SignWriting: in none of our faces, nor in the machine's fonts

# The check, run in the page: each grapheme on a canvas in the body's font stack, against the box.
CHECK = r"""
(() => {
  const family = getComputedStyle(document.body).fontFamily;
  const canvas = document.createElement("canvas"); canvas.width = 120; canvas.height = 120;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const pixels = (text) => {
    ctx.clearRect(0, 0, 120, 120); ctx.font = "80px " + family; ctx.textBaseline = "middle";
    ctx.fillStyle = "#000"; ctx.fillText(text, 10, 60);
    return Array.from(ctx.getImageData(0, 0, 120, 120).data.filter((_, i) => i %% 4 === 3)).join(",");
  };
  const box = pixels(%(no_face)s);
  const ignorable = /[\u200c\u200d\ufe0e\ufe0f\u20e3\u{e0020}-\u{e007f}]/u;
  const seg = new Intl.Segmenter(undefined, { granularity: "grapheme" });
  const boxes = {};
  for (const [key, name] of Object.entries(%(names)s)) {
    // A grapheme, and each of its characters alone (a ZWJ sequence with no font would be drawn
    // as several boxes side by side, which does not look like one box).
    boxes[key] = [...seg.segment(name)].map(s => s.segment).filter(g => g.trim() && (pixels(g) === box
      || [...g].some(c => !ignorable.test(c) && pixels(c) === box)));
  }
  return JSON.stringify({ boxes, control: pixels(%(control)s) === box });
})()
"""


@pytest.fixture(scope="module")
def gateway():
    settings = load_settings(GatewaySettings, env={}, requests_url=NOWHERE, kudos_url=NOWHERE, points_url=NOWHERE,
                             service_timeout_s=1)
    with serving(create_app(settings)) as url:
        yield url


def test_the_gateway_serves_every_face_with_its_css(gateway):
    css = http.get(gateway + "/fonts/fonts.css", timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert css.headers["Access-Control-Allow-Origin"] == "*"  # a portal on another origin may use them
    for face in FACES:
        for name in files(face):
            assert f'/fonts/{name}"' in css.text
            font = http.get(f"{gateway}/fonts/{name}", timeout=30)
            assert font.status_code == 200 and len(font.content) > 10_000, name
            assert font.content[:4] in (b"\x00\x01\x00\x00", b"ttcf", b"OTTO"), name
            assert "max-age" in font.headers["Cache-Control"]
    assert http.get(gateway + "/fonts/..%2Fpyproject.toml", timeout=10).status_code == 404
    assert http.get(gateway + "/fonts/VERSIONS.txt", timeout=10).status_code == 404  # fonts only


@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is missing (make test installs it as root)")
def test_the_screen_shows_cjk_arabic_and_every_listed_script_without_boxes(gateway):
    with open_page(f"{gateway}/screens/leaderboard?period=week") as page:
        page.wait_for("typeof render === 'function'")
        entries = [{"rank": i + 1, "points": 200 - 10 * i, "movement": 1 - i % 3, "person": {"id": f"p{i}", "name": name}}
                   for i, name in enumerate(NAMES.values())]
        page.evaluate(f"render({{entries: {json.dumps(entries)}}})")
        card = render_card(CardData(NAMES["chinese"], (NAMES["arabic"],), MESSAGE, ("teamwork",), "coffee", "29 November 2026"))
        card_url = "data:image/png;base64," + base64.b64encode(card).decode()
        page.evaluate("addKudos({id: 'k1', cardUrl: %s, message: '', giver: {name: %s}, recipients: [{name: %s}]})"
                      % (json.dumps(card_url), json.dumps(NAMES["chinese"]), json.dumps(NAMES["arabic"])))
        page.wait_for("document.getElementById('card').complete && document.getElementById('card').naturalWidth === 1200")
        page.evaluate("document.fonts.ready.then(() => { document.body.dataset.fonts = JSON.stringify("
                      "[...document.fonts].filter(f => f.status === 'loaded').map(f => f.family)) })")
        loaded = set(json.loads(page.wait_for("document.body.dataset.fonts", timeout=30)))
        # The page's own CSS made Chromium fetch the faces these names need (and only on need).
        assert {"Inside Track Sans", "Inside Track CJK", "Inside Track Thai", "Inside Track Devanagari",
                "Inside Track Emoji"} <= loaded, loaded
        shown = page.evaluate("[...document.querySelectorAll('#board li .name')].map(n => n.textContent)")
        assert shown == list(NAMES.values())
        assert page.evaluate("document.getElementById('caption').textContent") == f"\u2068{NAMES['chinese']}\u2069 → \u2068{NAMES['arabic']}\u2069"

        result = json.loads(page.evaluate(CHECK % {"no_face": json.dumps(NO_FACE_HAS), "names": json.dumps(NAMES),
                                                   "control": json.dumps("\U0001D801")}))
        assert result["control"], "the check did not see a box for a character no font has: it proves nothing"
        assert result["boxes"] == {key: [] for key in NAMES}, result["boxes"]
        png = page.screenshot()
    artifacts = PROJECT_ROOT / "tests" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "leaderboard-screen-scripts.png").write_bytes(png)
    assert Image.open(io.BytesIO(png)).size == (1920, 1080)
