"""Run the service processes for `insidetrack up`: start, wait until ready, restart on crash.

Each service is ``python -m services.<name>`` with its log in ``var/log/<name>.log``. A crash
is restarted with backoff (1 s, 2 s, 4 s ... up to 30 s); stopping sends SIGTERM and waits.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests as http

from ops.infra.process import InfraError, port_open, tail
from shared.config import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

# Every service runs on the C allocator, not Python's small-object allocator: after a big batch
# (an import, a scoring backlog) the memory it freed goes back to the system (shared/memory.py
# trims it), where Python's arenas keep a batch's peak as the process's size. 10,000 history
# kudos scored in-process: 91 MB kept after the work with pymalloc, 63 MB with malloc (the start
# was 67), for ~9 % fewer awards/s. And at most two C allocator heaps (arenas): glibc gives each
# thread that allocates its own heap (up to 8 per core), and a service has ~20 threads (consumers,
# Kafka clients, HTTP): each heap kept its own high-water mark, so the points process grew from
# 73 to 160-192 MB during the demo's first load while its Python objects never exceeded 48 MB
# (tracemalloc); with two heaps it stayed at 72 MB through the same load. Overridable by the
# environment (also in deploy/Dockerfile).
SERVICE_ENV = {"PYTHONMALLOC": "malloc", "MALLOC_ARENA_MAX": "2"}


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port_field: str
    # Settings of this process beside the stack's (a second process of the same module: its
    # port, what it runs), as environment variables.
    env: tuple[tuple[str, str], ...] = ()

    def port(self, settings: Settings) -> int:
        return getattr(settings, self.port_field)

    def environment(self, settings: Settings) -> dict[str, str]:
        return {name: value.format(port=self.port(settings)) for name, value in self.env}


# The processes `insidetrack up` runs, in start order.
SERVICES = (
    ServiceSpec("requests", "services.requests", "requests_port"),
    ServiceSpec("kudos", "services.recognition.kudos", "kudos_port"),
    # The points pipeline in two processes, so its stages run on two cores: applying (and the
    # API the gateway calls, from the points state) in one, scoring and insights in the other
    # (docs/points.md, "Stages").
    ServiceSpec("points", "services.recognition.points", "points_port", env=(("INSIDETRACK_POINTS_STAGES", "apply"),)),
    ServiceSpec("points-score", "services.recognition.points", "points_score_port",
                env=(("INSIDETRACK_POINTS_STAGES", "score,insights"), ("INSIDETRACK_POINTS_PORT", "{port}"))),
    ServiceSpec("notifications", "services.notifications", "notifications_port"),
    ServiceSpec("gateway", "services.gateway", "gateway_port"),
)


@dataclass
class ManagedProcess:
    spec: ServiceSpec
    settings: Settings
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    logfile: Path = field(init=False)

    def __post_init__(self) -> None:
        self.logfile = self.settings.log_dir / f"{self.spec.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.port(self.settings)}"

    def start(self) -> None:
        port = self.spec.port(self.settings)
        if port_open(port):
            raise InfraError(
                f"Port {port} is taken, so the {self.spec.name} service cannot listen there. Stop that program "
                f"or set INSIDETRACK_{self.spec.port_field.upper()}=<port>."
            )
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.spec.module],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=PROJECT_ROOT, env={**SERVICE_ENV, **os.environ, **self.spec.environment(self.settings), **self.env},
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    def ready(self) -> bool:
        try:
            return http.get(self.url + "/readyz", timeout=1).status_code == 200
        except http.RequestException:
            return False

    def check(self) -> str | None:
        """Restart the process if it died (with backoff); return a message when it did."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code = self.proc.returncode
        now = time.monotonic()
        if now - self.started_at > 60:
            self.restarts = 0  # it ran well for a while: start the backoff over
        delay = min(30.0, 2.0 ** self.restarts)
        if not self.next_start:
            self.next_start = now + delay
            return f"{self.spec.name} exited with {code}; restarting in {delay:.0f}s (log: {self.logfile})"
        if now >= self.next_start:
            self.restarts += 1
            self.next_start = 0.0
            self.start()
        return None

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Supervisor:
    def __init__(self, settings: Settings, specs=SERVICES, env: dict[str, str] | None = None):
        self.processes = [ManagedProcess(spec, settings, dict(env or {})) for spec in specs]

    # A start is seconds; the first start on a var/ from an older version may upgrade its read
    # models first (a minute or more at a year's size on a busy machine). A process that exits
    # fails the start at once, so waiting longer costs nothing when all is well.
    def start_all(self, timeout: float = 600) -> None:
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            while not process.ready():
                if process.proc.poll() is not None:
                    raise InfraError(f"{process.spec.name} exited during start. Last lines of {process.logfile}:\n{tail(process.logfile)}")
                if time.monotonic() > deadline:
                    raise InfraError(f"{process.spec.name} was not ready within {timeout:.0f}s. Last lines of {process.logfile}:\n{tail(process.logfile)}")
                time.sleep(0.2)

    def check(self) -> list[str]:
        return [m for m in (p.check() for p in self.processes) if m]

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
