"""Idle CPU of a running stack: each process's CPU over a window of no traffic, in % of one core.

Run it beside a stack started with the same settings (``insidetrack up`` with the same
``INSIDETRACK_*`` variables), once that stack has settled (the demo company loaded, the
relays' start-time search done)::

    INSIDETRACK_VAR_DIR=... INSIDETRACK_KAFKA_PORT=... .venv/bin/python bench/idle.py

It finds the four services' processes (``python -m services.<name>`` whose environment names
this stack's ``INSIDETRACK_VAR_DIR`` and port), FerretDB and Kafka (their pid files), then
reads utime + stime from ``/proc/<pid>/stat`` at the start and end of each window. A service
with more than one process counts them all: the gateway is a gunicorn master and its worker,
and the worker is the one that reads the live topics (the master alone idles at ~0.02 %). ``IDLE_S`` (60) is one window, ``IDLE_ROUNDS`` (3) how many, ``IDLE_SETTLE_S`` (0) a
pause first. The machine is shared: repeat, and compare rounds, not single figures.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inprocess import cpu_seconds  # noqa: E402

from ops.infra import local  # noqa: E402
from ops.supervisor import SERVICES  # noqa: E402
from shared.config import load_settings  # noqa: E402

IDLE_S = float(os.environ.get("IDLE_S", "60"))
IDLE_ROUNDS = int(os.environ.get("IDLE_ROUNDS", "3"))
IDLE_SETTLE_S = float(os.environ.get("IDLE_SETTLE_S", "0"))


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def service_pids(settings) -> dict[str, list[int]]:
    """The processes of each service of this stack, by service name."""
    wanted: dict[str, list] = {}
    for spec in SERVICES:
        wanted.setdefault(spec.module, []).append(spec)
    var_dir = str(Path(settings.var_dir).resolve())
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-m" not in argv:
            continue
        module = argv[argv.index(b"-m") + 1].decode() if argv.index(b"-m") + 1 < len(argv) else ""
        env = _environ(int(entry.name))
        if module not in wanted or str(Path(env.get("INSIDETRACK_VAR_DIR", "var")).resolve()) != var_dir:
            continue
        for spec in wanted[module]:  # two processes of one module (points): told apart by what the spec sets
            if any(env.get(name) != value for name, value in spec.environment(settings).items()):
                continue
            port = env.get(f"INSIDETRACK_{spec.port_field.upper()}")
            if port is not None and int(port) != spec.port(settings):
                continue
            found.setdefault(spec.name, []).append(int(entry.name))
            break
    return found


def main() -> int:
    settings = load_settings()
    pids = service_pids(settings)
    pids.update({name: [pid] for name, pid in local.pids(settings).items() if pid})
    missing = [s.name for s in SERVICES if s.name not in pids]
    if missing:
        print(f"not running with these settings: {', '.join(missing)}", file=sys.stderr)
        return 1
    print("pids:", json.dumps(pids), flush=True)
    time.sleep(IDLE_SETTLE_S)
    rounds = []
    for n in range(IDLE_ROUNDS):
        before = {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}
        start = time.monotonic()
        time.sleep(IDLE_S)
        elapsed = time.monotonic() - start
        figures = {name: round(100 * (sum(cpu_seconds(pid) for pid in group) - before[name]) / elapsed, 2)
                   for name, group in pids.items()}
        figures["services_and_ferretdb"] = round(sum(v for k, v in figures.items() if k != "kafka"), 2)
        rounds.append(figures)
        print(f"round {n + 1} ({elapsed:.0f} s, % of one core):",
              " ".join(f"{k}={v}" for k, v in figures.items()), f"load={os.getloadavg()[0]:.2f}", flush=True)
    print(json.dumps({"seconds": IDLE_S, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
