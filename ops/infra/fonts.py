"""Fetch the fonts DejaVu lacks (shared/fonts) from Debian's packages, once, into a folder.

``apt-get download`` takes each package from the machine's Debian mirror (checked against the
signed archive like any install, no root needed once the package lists exist); ``dpkg-deb -x``
unpacks it into a scratch folder and only the files we use are kept, with each package's
copyright file (the licence) beside them. Nothing is installed system-wide.

    python -m ops.infra.fonts DEST     # what deploy/Dockerfile runs (standard library only)
    insidetrack infra provision        # the same into INSIDETRACK_FONT_DIR (make up, make test)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.fonts import FACES, files, missing


class FontFetchError(RuntimeError):
    pass


def _run(argv: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise FontFetchError(f"{argv[0]} is missing: the fonts come from Debian's packages (apt-get, dpkg-deb)") from None
    if done.returncode != 0:
        raise FontFetchError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def _download(packages: list[str], work: Path) -> None:
    try:
        _run(["apt-get", "download", *packages], work)
    except FontFetchError:
        if os.geteuid() != 0:
            raise FontFetchError(
                f"apt-get download {' '.join(packages)} failed; the package lists may be missing: "
                "run `sudo apt-get update` once, then again"
            ) from None
        _run(["apt-get", "update", "-qq"], work)  # a fresh machine has no package lists yet
        _run(["apt-get", "download", *packages], work)


def provision(dest: Path) -> str:
    """Make sure every fetched font file is in ``dest``; return what was done."""
    if not missing(dest):
        return f"ready ({dest})"
    packages = sorted({face.package for face in FACES if face.package})
    dest.mkdir(parents=True, exist_ok=True)
    print(f"Fetching fonts from Debian's packages ({', '.join(packages)}; about 80 MB, first run only) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="insidetrack-fonts-") as tmp:
        work = Path(tmp)
        _download(packages, work)
        versions = []
        for package in packages:
            (deb,) = work.glob(f"{package}_*.deb")
            tree = work / package
            _run(["dpkg-deb", "-x", str(deb), str(tree)], work)
            versions.append(f"{package} {_run(['dpkg-deb', '-f', str(deb), 'Version'], work).strip()}")
            wanted = {name for face in FACES if face.package == package for name in files(face)}
            found = {path.name: path for path in (tree / "usr" / "share" / "fonts").rglob("*") if path.name in wanted}
            if wanted - set(found):
                raise FontFetchError(f"{package} has no {', '.join(sorted(wanted - set(found)))}")
            for name, path in found.items():
                partial = dest / f"{name}.partial"
                shutil.copyfile(path, partial)
                partial.replace(dest / name)  # a reader never sees half a font
            shutil.copyfile(tree / "usr" / "share" / "doc" / package / "copyright", dest / f"LICENSE-{package}.txt")
        (dest / "VERSIONS.txt").write_text("\n".join(versions) + "\n")
    size = sum(p.stat().st_size for p in dest.iterdir()) / 1e6
    return f"fetched into {dest} ({size:.0f} MB: {'; '.join(versions)})"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ops.infra.fonts DEST", file=sys.stderr)
        return 2
    try:
        print(provision(Path(argv[0])))
    except FontFetchError as exc:
        print(f"fonts: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
