"""The fonts (shared/fonts): what is shipped, what is fetched, the web fonts' CSS, the fetcher's
answers when it has nothing to do or cannot work. The cards' use of them: test_kudos_cards.py."""

from __future__ import annotations

import pytest

from ops.infra import fonts as fetcher
from shared.config import load_settings
from shared.fonts import EMOJI, FACES, SHIPPED_DIR, TEXT_FACES, files, font_dir, missing, served_files, web_fonts_css


def test_the_shipped_faces_are_in_the_repository_with_their_licences():
    for face in FACES:
        if face.package is None:
            assert all((SHIPPED_DIR / name).is_file() for name in files(face))
    assert (SHIPPED_DIR / "LICENSE-DejaVu.txt").is_file() and (SHIPPED_DIR / "LICENSE-Noto-OFL.txt").is_file()


def test_the_fetched_faces_are_where_the_settings_say():
    folder = font_dir(load_settings(env={}))
    assert missing(folder) == [], "run `insidetrack infra provision` (make test does)"
    assert (folder / "VERSIONS.txt").is_file()
    assert {p.name for p in folder.glob("LICENSE-*.txt")} == {f"LICENSE-{f.package}.txt" for f in FACES if f.package}


def test_the_font_dir_setting_overrides_the_cache(tmp_path):
    assert font_dir(load_settings(env={"INSIDETRACK_FONT_DIR": str(tmp_path)})) == tmp_path
    assert font_dir(load_settings(env={"INSIDETRACK_CACHE_DIR": str(tmp_path)})) == tmp_path / "fonts"


def test_the_css_declares_every_file_once_and_puts_colour_emoji_first():
    css = web_fonts_css("/fonts/")
    for face in FACES:
        for name in files(face):
            assert css.count(f'url("/fonts/{name}")') == 1
        if face.package:
            assert face.unicode_range and face.unicode_range in css  # fetched only when needed
    stack = css.split("--it-font:")[1]
    assert stack.index(EMOJI.family) < min(stack.index(face.family) for face in TEXT_FACES)
    assert set(served_files(SHIPPED_DIR)) == {name for face in FACES for name in files(face)}


def test_the_fetcher_does_nothing_when_every_font_is_there(tmp_path):
    for face in FACES:
        for name in files(face) if face.package else ():
            (tmp_path / name).write_bytes(b"x")
    assert fetcher.provision(tmp_path).startswith("ready")


def test_the_fetcher_says_what_is_missing_without_apt(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-deb
    with pytest.raises(fetcher.FontFetchError, match="Debian's packages"):
        fetcher.provision(tmp_path / "fonts")
