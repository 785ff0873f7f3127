"""The local real stack: an Apache Kafka broker (KRaft) and FerretDB on SQLite.

Both are provisioned by the project itself and cached, so the second start takes seconds:

* Kafka's jars are resolved by Maven from ``deploy/local/kafka/pom.xml`` into
  ``<cache>/kafka/<pom hash>/lib``; the broker runs as ``java -Xmx... kafka.Kafka``.
* FerretDB is our own small Go program (``deploy/local/ferretdb``) built with ``go build``
  into ``<cache>/ferretdb/<source hash>/ferretdb-local``.

Data, logs and pid files live under ``var_dir`` (``var/`` by default; tests use their own).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from ops.infra.process import Daemon, InfraError, port_open, require_tool, tail
from shared.bus.kafka import ensure_topics, kafka_answers_metadata
from shared.config import PROJECT_ROOT, Settings, env_name
from shared.db import mongo_client

log = logging.getLogger(__name__)

KAFKA_SRC = PROJECT_ROOT / "deploy" / "local" / "kafka"
FERRETDB_SRC = PROJECT_ROOT / "deploy" / "local" / "ferretdb"
START_TIMEOUT_S = 90


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


FERRETDB_PATCHES = FERRETDB_SRC / "patches.json"
FERRETDB_GOGC = "400"  # Go's GC target for FerretDB (FerretDB.up says why)


def _patched_program(go: str, work: Path, env: dict, logfile: Path) -> Path:
    """Copy our program and the patched modules it embeds under ``work``; return the program dir.

    Each patch in ``deploy/local/ferretdb/patches.json`` replaces one exact text in one file of
    a module (fetched by ``go mod download`` at the version go.mod requires); the program is
    built against the patched copy with a ``replace``. A patch that no longer applies stops the
    build with a clear error instead of building something else.
    """
    program = work / "program"
    program.mkdir(parents=True)
    for name in ("main.go", "go.mod", "go.sum"):
        shutil.copy2(FERRETDB_SRC / name, program / name)
    patches = json.loads(FERRETDB_PATCHES.read_text())
    for module in sorted({p["module"] for p in patches}):
        found = subprocess.run([go, "mod", "download", "-json", module], cwd=program, env=env,
                               capture_output=True, text=True, timeout=1800)
        if found.returncode != 0:
            raise InfraError(f"go mod download {module} failed (the Go module proxy must be reachable on the "
                             f"first build):\n{found.stdout[-2000:]}{found.stderr[-2000:]}")
        source = Path(json.loads(found.stdout)["Dir"])
        copy = work / "modules" / module.replace("/", "_")
        shutil.copytree(source, copy, copy_function=shutil.copyfile)  # the module cache is read-only
        for folder, _, _ in os.walk(copy):
            os.chmod(folder, 0o755)
        for patch in (p for p in patches if p["module"] == module):
            target = copy / patch["file"]
            text = target.read_text()
            if text.count(patch["old"]) != 1:
                raise InfraError(f"the FerretDB patch for {patch['file']} no longer applies (see {FERRETDB_PATCHES})")
            target.write_text(text.replace(patch["old"], patch["new"]))
        edit = subprocess.run([go, "mod", "edit", f"-replace={module}={copy}"], cwd=program, env=env,
                              capture_output=True, text=True, timeout=60)
        if edit.returncode != 0:
            raise InfraError(f"go mod edit -replace failed:\n{edit.stderr[-2000:]}")
    return program


def new_cluster_id() -> str:
    """A KRaft cluster id (base64url of 16 random bytes) that cannot be read as an option.

    About one in 64 ids would start with "-", and ``kafka-storage format -t -x...`` then fails.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _run_logged(argv: list[str], cwd: Path, logfile: Path, env: dict | None = None, timeout: float = 1800) -> int:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "wb") as out:
        try:
            return subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return -1


# -- Kafka ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KafkaBroker:
    settings: Settings

    @property
    def home(self) -> Path:
        return self.settings.var_dir / "kafka"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def daemon(self) -> Daemon:
        return Daemon("kafka", self.settings.run_dir, self.settings.log_dir, marker=str(self.config_file))

    @property
    def lib_dir(self) -> Path:
        digest = _digest(KAFKA_SRC / "pom.xml")
        return self.settings.cache_dir / "kafka" / digest / "lib"

    def provision(self) -> Path:
        """Resolve the broker's jars with Maven, once; return the folder holding them."""
        lib = self.lib_dir
        if (lib / ".complete").exists():
            return lib
        mvn = require_tool("mvn", "Install Apache Maven 3.8+ (Debian: apt-get install maven).")
        partial = lib.with_name("lib.partial")
        shutil.rmtree(partial, ignore_errors=True)
        logfile = self.settings.log_dir / "kafka-resolve.log"
        print(f"Resolving Apache Kafka jars with Maven (first run only; log: {logfile}) ...", flush=True)
        code = _run_logged(
            [mvn, "-B", "-q", "-f", str(KAFKA_SRC / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={partial}", "-DincludeScope=runtime"],
            cwd=KAFKA_SRC, logfile=logfile,
        )
        if code != 0 or not any(partial.glob("kafka_2.13-*.jar")):
            raise InfraError(
                "Maven could not download Apache Kafka from Maven Central (is the registry reachable, "
                f"or a mirror set in ~/.m2/settings.xml?). Last lines of {logfile}:\n{tail(logfile)}"
            )
        shutil.rmtree(lib, ignore_errors=True)
        partial.rename(lib)
        (lib / ".complete").write_text("ok\n")
        return lib

    def write_config(self) -> None:
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.home / "data"),
            "num.partitions": str(s.topic_partitions),
            # Topics are created on purpose (shared.bus.kafka.ensure_topics), never by a typo.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            # Kafka's defaults (3 network and 8 request threads) are for a server's cores. On the
            # two cores this stack shares with FerretDB and the services, 2 and 2 took the
            # broker from 0.17-0.19 to 0.10-0.12 ms of CPU an event in the 100,000-event pipeline
            # bench (docs/performance.md, eighteenth session), its threads no longer contending.
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def _java(self, lib: Path) -> list[str]:
        java = require_tool("java", "Install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless).")
        return [
            java,
            f"-Xmx{self.settings.kafka_heap_mb}m",
            f"-Xms{min(256, self.settings.kafka_heap_mb)}m",
            # The serial collector: one broker with a small heap on two shared cores needs no
            # concurrent collector threads (G1's). Same bench: 0.117 -> 0.100 ms an event, and
            # the broker's RSS 526 -> 419 MB.
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_SRC / 'log4j2.properties'}",
            "-cp",
            f"{lib}/*",
        ]

    def format_storage(self, lib: Path) -> None:
        data = self.home / "data"
        if (data / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        logfile = self.settings.log_dir / "kafka-format.log"
        code = _run_logged(
            self._java(lib) + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_file)],
            cwd=self.home, logfile=logfile, timeout=120,
        )
        if code != 0:
            raise InfraError(f"Formatting Kafka storage failed. Last lines of {logfile}:\n{tail(logfile)}")

    def ready(self) -> bool:
        if not port_open(self.settings.kafka_port):
            return False
        try:
            kafka_answers_metadata(self.settings)
            return True
        except Exception:  # noqa: BLE001 - not ready yet
            return False

    def up(self) -> str:
        s = self.settings
        if self.daemon.pid() is not None:
            self.daemon.wait_ready(self.ready, START_TIMEOUT_S, "answer metadata requests")
            return "already running"
        for port, var in ((s.kafka_port, "kafka_port"), (s.kafka_controller_port, "kafka_controller_port")):
            if port_open(port):
                raise InfraError(
                    f"Port {port} on 127.0.0.1 is taken by another program, so Kafka cannot listen there. "
                    f"Stop that program or choose a free port with {env_name(var)}=<port>."
                )
        lib = self.provision()
        self.write_config()
        self.format_storage(lib)
        self.daemon.start(self._java(lib) + ["kafka.Kafka", str(self.config_file)], cwd=self.home)
        self.daemon.wait_ready(self.ready, START_TIMEOUT_S, "answer metadata requests")
        ensure_topics(s)
        return "started"


# -- FerretDB -------------------------------------------------------------------------------

@dataclass(frozen=True)
class FerretDB:
    settings: Settings

    @property
    def data_dir(self) -> Path:
        return self.settings.var_dir / "ferretdb"

    @property
    def daemon(self) -> Daemon:
        return Daemon("ferretdb", self.settings.run_dir, self.settings.log_dir, marker=str(self.data_dir))

    @property
    def binary(self) -> Path:
        digest = _digest(FERRETDB_SRC / "go.mod", FERRETDB_SRC / "go.sum", FERRETDB_SRC / "main.go", FERRETDB_PATCHES)
        return self.settings.cache_dir / "ferretdb" / digest / "ferretdb-local"

    def provision(self) -> Path:
        """Build our embedded-FerretDB program with ``go build``, once; return the binary."""
        binary = self.binary
        if binary.exists():
            return binary
        go = require_tool("go", "Install Go 1.24+ (https://go.dev/doc/install or Debian's golang package).")
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name("ferretdb-local.partial")
        logfile = self.settings.log_dir / "ferretdb-build.log"
        print(f"Building FerretDB 1.24 with go build (first run only; log: {logfile}) ...", flush=True)
        env = {**os.environ, "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"}
        work = binary.parent / "build"
        shutil.rmtree(work, ignore_errors=True)
        program = _patched_program(go, work, env, logfile)
        code = _run_logged([go, "build", "-o", str(partial), "."], cwd=program, logfile=logfile, env=env)
        if code == 0 and partial.exists():
            shutil.rmtree(work, ignore_errors=True)
        else:
            raise InfraError(
                "Building FerretDB failed (the Go module proxy must be reachable on the first build). "
                f"Last lines of {logfile}:\n{tail(logfile)}"
            )
        partial.rename(binary)
        return binary

    def ready(self) -> bool:
        if not port_open(self.settings.mongo_port):
            return False
        client = mongo_client(self.settings.model_copy(update={"mongo_timeout_ms": 1000}))
        try:
            client.admin.command("ping")
            return True
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        finally:
            client.close()

    def up(self) -> str:
        s = self.settings
        if self.daemon.pid() is not None:
            self.daemon.wait_ready(self.ready, START_TIMEOUT_S, "answer ping")
            return "already running"
        if port_open(s.mongo_port):
            raise InfraError(
                f"Port {s.mongo_port} on 127.0.0.1 is taken by another program, so FerretDB cannot listen "
                f"there. Stop that program or choose a free port with {env_name('mongo_port')}=<port>."
            )
        binary = self.provision()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        profile = ["-pprof", s.ferretdb_pprof] if s.ferretdb_pprof else []
        # Go's garbage collector less often (GOGC, unless set): FerretDB allocates per document it
        # decodes, and collecting at the default 100 % took 13-18 % of its CPU under the points
        # pipeline's writes (30,000 history kudos in-process: FerretDB 42 s of CPU, 34 s at 400;
        # its RSS peaked at 67 MB).
        env = {**os.environ, "GOGC": os.environ.get("GOGC") or FERRETDB_GOGC}
        self.daemon.start(
            [str(binary), "-listen", f"127.0.0.1:{s.mongo_port}", "-data", str(self.data_dir), *profile], cwd=self.data_dir,
            env=env,
        )
        self.daemon.wait_ready(self.ready, START_TIMEOUT_S, "answer ping")
        return "started"


# -- the stack ------------------------------------------------------------------------------

def components(settings: Settings) -> tuple[FerretDB, KafkaBroker]:
    return FerretDB(settings), KafkaBroker(settings)


def up(settings: Settings) -> dict[str, str]:
    """Provision (cached) and start FerretDB and Kafka; idempotent; waits until both answer."""
    return {c.daemon.name: c.up() for c in components(settings)}


def down(settings: Settings) -> dict[str, str]:
    """Stop both (Kafka first: it shuts down cleanly in a few seconds)."""
    result = {}
    for c in reversed(components(settings)):
        result[c.daemon.name] = "stopped" if c.daemon.stop() else "not running"
    return result


def pids(settings: Settings) -> dict[str, int | None]:
    """Each component's pid (None: not running), from its pid file, without asking it anything:
    for a watch loop (``insidetrack up`` looks every second; ``status`` would open a Kafka admin
    client and a MongoDB client each time)."""
    return {c.daemon.name: c.daemon.pid() for c in components(settings)}


def status(settings: Settings) -> dict[str, dict]:
    """Each component's pid, whether it answers (a metadata request, a ping) and its log."""
    out = {}
    for c in components(settings):
        pid = c.daemon.pid()
        out[c.daemon.name] = {"pid": pid, "ready": bool(pid) and c.ready(), "log": str(c.daemon.logfile)}
    return out


def wipe(settings: Settings) -> None:
    """Delete the stack's data (it must be down); used by tests for a clean start."""
    for c in components(settings):
        if c.daemon.pid() is not None:
            raise InfraError(f"{c.daemon.name} is running; stop it before wiping its data")
    shutil.rmtree(settings.var_dir / "kafka", ignore_errors=True)
    shutil.rmtree(settings.var_dir / "ferretdb", ignore_errors=True)
