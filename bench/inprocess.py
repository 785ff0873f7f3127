"""What the in-process benches share (bench/scoring.py, bench/requests_import.py): the bench's
FerretDB alone, with every command's time counted by command and collection."""

from __future__ import annotations

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
    try:
        yield timings
    finally:
        ferretdb.daemon.stop()
