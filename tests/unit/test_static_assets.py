"""Every page the gateway serves works offline: its scripts, styles and modules are ours,
served by the gateway itself (GraphiQL's vendored files are pinned by their sums)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "services" / "gateway" / "static"

VENDORED = {
    "vendor/graphiql-3.8.3/graphiql.min.js": "22faab94067b695e5f7959619fbe686ebcc8955002a0c97d986bcbba4ad4bc2c",
    "vendor/graphiql-3.8.3/graphiql.min.css": "b1868247f8e0502cd869e581f5f3cb55b334862e7f51b1d6cbace11059b9adc2",
    "vendor/react-18.3.1/react.production.min.js": "d949f1c3687aedadcedac85261865f29b17cd273997e7f6b2bfc53b2f9d4c4dd",
    "vendor/react-dom-18.3.1/react-dom.production.min.js": "35f4f974f4b2bcd44da73963347f8952e341f83909e4498227d4e26b98f66f0d",
}

# src="...", href="...", import ... from "...", import("..."), url(...) in our own pages and modules.
REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")


def _ours() -> list[Path]:
    return sorted(p for p in STATIC.rglob("*") if p.suffix in (".html", ".js", ".css") and "vendor" not in p.parts)


@pytest.mark.parametrize("name, digest", sorted(VENDORED.items()))
def test_vendored_files_are_the_published_ones_with_their_licence(name, digest):
    path = STATIC / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert (path.parent / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_no_page_or_module_of_ours_loads_anything_from_outside():
    files = _ours()
    assert any(p.name == "graphiql.html" for p in files) and any(p.name == "screen.html" for p in files)
    outside = []
    for path in files:
        for match in REFERENCE.finditer(path.read_text(encoding="utf-8")):
            target = next(g for g in match.groups() if g)
            if re.match(r"^(?:[a-z]+:)?//", target, re.I) and not target.startswith("data:"):
                outside.append((path.name, target))
    assert outside == []


def test_every_local_asset_graphiql_names_is_there():
    page = (STATIC / "graphiql.html").read_text(encoding="utf-8")
    names = re.findall(r"""(?:src|href)="/static/([^"]+)\"""", page)
    assert len(names) == 4
    for name in names:
        assert (STATIC / name).is_file(), name


def test_the_portal_puts_what_people_wrote_in_as_text_never_as_html():
    modules = sorted((STATIC / "portal").rglob("*.js"))
    assert len(modules) >= 5
    for path in modules:
        source = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{path.name} uses {sink}"
