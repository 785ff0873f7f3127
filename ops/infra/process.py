"""Start, find and stop the local stack's background processes (pid files under var/run)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence


# Daemons this process started; their Popen handles must outlive the call that made them.
_CHILDREN: dict[int, subprocess.Popen] = {}


class InfraError(Exception):
    """Something the person at the terminal must fix; the message says what and how."""


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise InfraError(f"`{name}` was not found on PATH. {hint}")
    return path


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Daemon:
    """One background process of the local stack."""

    name: str
    run_dir: Path
    log_dir: Path
    marker: str  # a string in its command line, so a recycled pid is never mistaken for it

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            self.pidfile.unlink(missing_ok=True)
            return None
        # Right after exec the kernel may show an empty command line for a moment: still ours.
        if (cmdline and self.marker not in cmdline) or _is_zombie(pid):
            self.pidfile.unlink(missing_ok=True)
            return None
        return pid

    def start(self, argv: Sequence[str], cwd: Path | None = None, env: dict | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not the daemon
            )
        _CHILDREN[proc.pid] = proc  # keep the handle: it reaps the process when it ends
        self.pidfile.write_text(str(proc.pid))
        return proc.pid

    def wait_ready(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise InfraError(f"{self.name} exited during start. Last lines of {self.logfile}:\n{tail(self.logfile)}")
            if check():
                return
            time.sleep(0.2)
        raise InfraError(
            f"{self.name} did not {what} within {timeout:.0f}s. Last lines of {self.logfile}:\n{tail(self.logfile)}"
        )

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM, wait, then SIGKILL; True if a process was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:  # ended (and reaped)
            del _CHILDREN[pid]
            return False
        return True
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)
