"""Give memory freed after a large piece of work back to the system.

Python returns its small-object arenas when they empty, but what it asked of the C allocator
(lists, dicts and strings over 512 bytes: a poll of 5,000 events, a batch's documents) stays
in glibc's per-thread heaps once freed, so a process that once handled a big batch keeps that
peak as its resident size. ``malloc_trim(0)`` hands the free pages of every heap back (a few
milliseconds); on a C library without it this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import linecache
import logging

log = logging.getLogger(__name__)


def _trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _trim()


def release_free_memory() -> bool:
    """Hand the allocator's free pages back to the system; True if it could.

    Python's source-line cache goes first: whatever formats a stack or a traceback fills it with
    the source of every file on it (pymongo does at each client's creation), and it held ~3 MB of
    lines in the points process of a company-year run (tracemalloc)."""
    linecache.clearcache()
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
