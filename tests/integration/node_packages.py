"""npm packages the tests use (Node.js tools, browser scripts), installed once into the cache
folder (``<cache_dir>/node``) with npm, never fetched at run time by the product itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def npm_available() -> bool:
    return bool(shutil.which("node") and shutil.which("npm"))


def node_modules(cache_dir: Path, *packages: str) -> Path:
    """The node_modules folder holding ``packages`` (``name@version``), installed there if one is missing."""
    prefix = cache_dir / "node"
    modules = prefix / "node_modules"
    missing = [p for p in packages if not (modules / p.rsplit("@", 1)[0]).is_dir()]
    if missing:
        subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *missing],
                       check=True, capture_output=True, timeout=300)
    return modules
