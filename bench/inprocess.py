"""What the benches share: the bench's FerretDB alone, with every command's time counted by
command and collection (bench/scoring.py, bench/requests_import.py); processes' CPU seconds, and
the pids of a running stack's processes (bench/run.py, bench/year.py)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from pymongo import monitoring


@contextmanager
def ferretdb_timed(settings) -> Iterator:
    """Start the bench's FerretDB and count every command's time (``shared.db.DatabaseTimes``,
    read with ``take()``); registered before any client is made, as pymongo needs. Stops it."""
    from ops.infra import local
    from shared.db import DatabaseTimes

    timings = DatabaseTimes("bench", every_s=0)  # read by take(), never logged
    monitoring.register(timings)
    ferretdb = local.FerretDB(settings)
    ferretdb.up()
    pid = ferretdb.daemon.pid()
    # FerretDB's own CPU seconds so far (its time is the benches' limit: one core, serialized writes).
    timings.ferretdb_cpu_s = lambda: cpu_seconds(pid)
    try:
        yield timings
    finally:
        ferretdb.daemon.stop()


def cpu_seconds(pid: int) -> float:
    """A process's CPU seconds so far (user + system, from /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime (fields 14, 15)


def stack_pids(settings, services) -> dict[str, int]:
    """A running stack's processes by name: the supervisor's services, FerretDB and Kafka."""
    from ops.infra import local

    pids = {p.spec.name: p.proc.pid for p in services.processes}
    pids.update({name: pid for name, pid in local.pids(settings).items() if pid})
    return pids
