"""Deployment files: Kubernetes manifests, compose file, Redis/Sentinel config and ACL users.

Kubernetes manifests are validated offline against the schemas shipped by
``kubernetes-validate``; KEDA's CRDs against a schema written here from the KEDA docs for the
fields we use. Names that must agree with the library (streams, group, env vars) are derived
from ``streamflow`` itself. ``redis.conf``, ``users.acl`` and ``sentinel.conf`` are loaded by a
real ``redis-server`` on a free loopback port.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from pydantic import BaseModel

from streamflow.keys import QueueKeys
from streamflow.settings import StreamflowSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
REDIS_CONF = DEPLOY / "redis" / "redis.conf"
USERS_ACL = DEPLOY / "redis" / "users.acl"
USERS_ACL_DOC = DEPLOY / "redis" / "users.acl.md"
SENTINEL_CONF = ROOT / "sentinel.conf"

QUEUE = "payments"
K8S_VERSIONS = ["1.28.0", kubernetes_validate.utils.latest_version()]
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "secret.example.yaml"}
REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")


# ---------------------------------------------------------------- loading


def load_manifests() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


MANIFESTS = load_manifests()


def only(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for _, d in MANIFESTS
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def worker_container() -> dict[str, Any]:
    containers = only("Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "worker")


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def settings_env_names() -> set[str]:
    """Every env var name StreamflowSettings reads, nested fields joined with ``__``."""
    config = StreamflowSettings.model_config
    prefix = str(config.get("env_prefix", "")).upper()
    delimiter = str(config.get("env_nested_delimiter") or "__")
    names: set[str] = set()

    def walk(model: type[BaseModel], path: str) -> None:
        for field_name, info in model.model_fields.items():
            name = f"{path}{delimiter}{field_name}".upper() if path else field_name.upper()
            names.add(prefix + name)
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, name)
            alias = info.validation_alias
            for choice in getattr(alias, "choices", [alias] if isinstance(alias, str) else []):
                if isinstance(choice, str):
                    names.add(choice.upper())

    walk(StreamflowSettings, "")
    return names


def manifest_env(container: dict[str, Any]) -> dict[str, str]:
    """The env a worker pod gets: ConfigMap and Secret (envFrom) then literal env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(only("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(only("Secret", source["secretRef"]["name"])["stringData"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "")
    return env


def parse_seconds(value: str | int) -> float:
    if isinstance(value, int):
        return float(value)
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value.strip())
    assert match and value.strip(), f"unsupported duration {value!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def expected_streams() -> list[str]:
    prefix = StreamflowSettings.model_fields["prefix"].default
    levels = StreamflowSettings.model_fields["levels"].default_factory()  # type: ignore[misc,call-arg]
    return list(QueueKeys(QUEUE, prefix=prefix, levels=tuple(levels)).streams)


def default_group() -> str:
    group = StreamflowSettings.model_fields["worker"].default_factory().group  # type: ignore[misc,call-arg,union-attr]
    assert isinstance(group, str)
    return group


# ---------------------------------------------------------------- Kubernetes schemas

# Written from the KEDA docs (ScaledObject / TriggerAuthentication specs, redis-*-streams
# scalers) for the fields these manifests use; unknown fields are errors, like kubectl's
# strict validation would report them.
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "additionalProperties": False,
                    "properties": {
                        "failureThreshold": {"type": "integer", "minimum": 1},
                        "replicas": {"type": "integer", "minimum": 0},
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "useCachedMetrics": {"type": "boolean"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            # KEDA's trigger metadata is map[string]string: numbers must be quoted.
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
TRIGGER_AUTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {
                            "parameter": {"type": "string"},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                    },
                },
                "env": {"type": "array"},
                "configMapTargetRef": {"type": "array"},
                "podIdentity": {"type": "object"},
                "hashiCorpVault": {"type": "object"},
            },
        },
    },
}
# Trigger metadata keys of the redis-streams scalers (KEDA docs).
REDIS_STREAMS_METADATA = {
    "address",
    "addresses",
    "addressesFromEnv",
    "host",
    "hosts",
    "hostsFromEnv",
    "port",
    "ports",
    "portsFromEnv",
    "usernameFromEnv",
    "passwordFromEnv",
    "sentinelUsernameFromEnv",
    "sentinelPasswordFromEnv",
    "sentinelMaster",
    "sentinelMasterFromEnv",
    "stream",
    "consumerGroup",
    "pendingEntriesCount",
    "streamLength",
    "lagCount",
    "activationLagCount",
    "enableTLS",
    "unsafeSsl",
    "databaseIndex",
}
TRIGGER_AUTH_PARAMETERS = {
    "username",
    "password",
    "sentinelUsername",
    "sentinelPassword",
    "sentinelMaster",
    "tls",
    "ca",
    "cert",
    "key",
    "keyPassword",
}


@pytest.mark.parametrize(
    ("filename", "doc"),
    [(f, d) for f, d in MANIFESTS if d["kind"] not in KEDA_KINDS],
    ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}",
)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_manifest_matches_kubernetes_schema(
    filename: str, doc: dict[str, Any], version: str
) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(
            f"{filename}: {doc['kind']} invalid for Kubernetes {version}: {exc.message}"
            f" at {'.'.join(map(str, exc.absolute_path))}"
        )


def test_keda_manifests_match_their_schema() -> None:
    schemas = {"ScaledObject": SCALED_OBJECT_SCHEMA, "TriggerAuthentication": TRIGGER_AUTH_SCHEMA}
    seen = set()
    for _, doc in MANIFESTS:
        if doc["kind"] in schemas:
            jsonschema.validate(doc, schemas[doc["kind"]])
            seen.add(doc["kind"])
    assert seen == KEDA_KINDS


def test_every_manifest_is_known_and_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - NOT_IN_KUSTOMIZATION
    assert listed == on_disk
    kinds = {d["kind"] for _, d in MANIFESTS}
    assert {"Deployment", "ConfigMap", "Secret", "PodDisruptionBudget"} | KEDA_KINDS <= kinds


# ---------------------------------------------------------------- KEDA agrees with the library


def keda_triggers() -> list[dict[str, Any]]:
    triggers = only("ScaledObject")["spec"]["triggers"]
    assert isinstance(triggers, list)
    return triggers


def test_keda_triggers_cover_every_priority_stream_with_pending_and_lag() -> None:
    streams = expected_streams()
    assert streams == [f"sf:{{{QUEUE}}}:p:{level}" for level in ("high", "normal", "low")]
    pending = [
        t["metadata"]["stream"] for t in keda_triggers() if "pendingEntriesCount" in t["metadata"]
    ]
    lag = [t["metadata"]["stream"] for t in keda_triggers() if "lagCount" in t["metadata"]]
    assert sorted(pending) == sorted(streams)
    assert sorted(lag) == sorted(streams)
    assert {t["metadata"]["stream"] for t in keda_triggers()} == set(streams)


def test_keda_triggers_use_the_default_group_and_valid_scaler_metadata() -> None:
    assert default_group() == "workers"
    for trigger in keda_triggers():
        meta = trigger["metadata"]
        assert trigger["type"] in {"redis-streams", "redis-sentinel-streams"}
        assert meta["consumerGroup"] == default_group()
        assert set(meta) <= REDIS_STREAMS_METADATA, set(meta) - REDIS_STREAMS_METADATA
        for count in ("pendingEntriesCount", "lagCount", "activationLagCount"):
            if count in meta:
                assert int(meta[count]) >= 0
        if "lagCount" in meta:
            assert "activationLagCount" in meta
            assert "pendingEntriesCount" not in meta, "one metric per trigger"
        if trigger["type"] == "redis-sentinel-streams":
            assert {"addresses", "addressesFromEnv", "hosts", "hostsFromEnv"} & set(meta)
            assert {"sentinelMaster", "sentinelMasterFromEnv"} & set(meta)
    names = [t["name"] for t in keda_triggers()]
    assert len(names) == len(set(names))


def test_keda_refs_resolve() -> None:
    scaled = only("ScaledObject")["spec"]
    deployment = only("Deployment")
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["scaleTargetRef"].get("envSourceContainerName", "worker") == "worker"
    assert scaled["minReplicaCount"] >= 1, "workers promote delayed jobs: never scale to zero"
    env = manifest_env(worker_container())
    settings_names = settings_env_names()
    for trigger in keda_triggers():
        meta = trigger["metadata"]
        for key, value in meta.items():
            if key.endswith("FromEnv"):
                assert value in env, f"{key}: {value} is not in the worker container's env"
                if value.startswith("STREAMFLOW_"):
                    assert value in settings_names
        auth = only("TriggerAuthentication", trigger["authenticationRef"]["name"])
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["parameter"] in TRIGGER_AUTH_PARAMETERS
            secret = only("Secret", ref["name"])
            assert ref["key"] in secret["stringData"]


# ---------------------------------------------------------------- the worker Deployment


def test_env_var_names_are_real_settings_fields() -> None:
    valid = settings_env_names()
    assert "STREAMFLOW_REDIS__SENTINELS" in valid  # the walk reaches nested fields
    used: dict[str, str] = {}
    for filename, doc in MANIFESTS:
        if doc["kind"] == "ConfigMap":
            used.update({k: filename for k in doc["data"]})
        if doc["kind"] == "Secret":
            used.update({k: filename for k in doc.get("stringData", {})})
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                used.update({e["name"]: filename for e in container.get("env", [])})
    for name, service in compose()["services"].items():
        used.update({k: f"compose:{name}" for k in compose_env(service)})
    unknown = {
        k: origin for k, origin in used.items() if k.startswith("STREAMFLOW_") and k not in valid
    }
    assert not unknown, f"not settings fields: {unknown}"
    assert any(k.startswith("STREAMFLOW_") for k in used)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("STREAMFLOW_") or name == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return monkeypatch


def test_manifest_env_parses_into_settings(clean_env: pytest.MonkeyPatch) -> None:
    env = manifest_env(worker_container())
    for name, value in env.items():
        if name.startswith("STREAMFLOW_"):
            clean_env.setenv(name, value)
    settings = StreamflowSettings()
    assert len(settings.redis.sentinels) == 3
    assert all(re.fullmatch(r"[^:,\s]+:\d+", s) for s in settings.redis.sentinels)
    assert settings.redis.master_name == "streamflow"
    assert settings.worker.group == default_group()
    assert settings.prefix == "sf"


def test_compose_worker_env_parses_into_settings(clean_env: pytest.MonkeyPatch) -> None:
    env = compose_env(compose()["services"]["worker-1"])
    for name, value in env.items():
        if name.startswith("STREAMFLOW_"):
            clean_env.setenv(name, value)
    settings = StreamflowSettings()
    assert settings.redis.sentinels == [f"sentinel-{i}:26379" for i in (1, 2, 3)]
    assert settings.redis.username == "streamflow-worker"


def test_termination_grace_exceeds_shutdown_grace() -> None:
    spec = only("Deployment")["spec"]["template"]["spec"]
    env = manifest_env(worker_container())
    default = StreamflowSettings.model_fields["worker"].default_factory().shutdown_grace  # type: ignore[misc,call-arg,union-attr]
    grace = float(env.get("STREAMFLOW_WORKER__SHUTDOWN_GRACE", default))
    assert spec["terminationGracePeriodSeconds"] > grace
    for name, service in compose()["services"].items():
        if name.startswith("worker"):
            compose_grace = float(
                compose_env(service).get("STREAMFLOW_WORKER__SHUTDOWN_GRACE", default)
            )
            assert parse_seconds(service["stop_grace_period"]) > compose_grace


def test_consumer_name_probes_and_security() -> None:
    deployment = only("Deployment")
    pod = deployment["spec"]["template"]
    container = worker_container()
    args = [str(a) for a in container["args"]]
    assert args[0] == QUEUE
    assert args[args.index("--consumer") + 1] == "$(POD_NAME)"
    pod_name = next(e for e in container["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    health_port = int(args[args.index("--health-port") + 1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        http = container[probe]["httpGet"]
        assert http["path"] == path
        assert ports.get(http["port"], http["port"]) == health_port
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    refs = {next(iter(s)): next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert refs["configMapRef"] == only("ConfigMap")["metadata"]["name"]
    assert only("Secret", refs["secretRef"])["type"] == "Opaque"


def test_pdb_selects_the_worker_pods() -> None:
    pdb = only("PodDisruptionBudget")["spec"]
    labels = only("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert "maxUnavailable" in pdb or "minAvailable" in pdb


# ---------------------------------------------------------------- compose


def test_compose_topology_and_dependencies() -> None:
    services = compose()["services"]
    sentinels = [n for n in services if n.startswith("sentinel")]
    workers = [n for n in services if n.startswith("worker")]
    assert {"redis-master", "redis-replica", "ingress", "otel-collector"} <= set(services)
    assert len(sentinels) == 3 and len(workers) == 2
    assert services["otel-collector"].get("profiles")
    for name in sentinels:
        mounts = [v.split(":") for v in services[name]["volumes"]]
        sources = {(COMPOSE.parent / m[0]).resolve() for m in mounts if m[0].startswith(".")}
        assert SENTINEL_CONF.resolve() in sources, f"{name} does not mount sentinel.conf"
        assert "--sentinel" in " ".join(services[name]["command"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./secrets/") or source == "./secrets":
                continue  # made by `sh deploy/secrets.sh generate deploy/secrets`, not in git
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} missing"
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services and "profiles" not in services[dep]
            assert cond["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
    for name in [*sentinels, *workers, "redis-master", "redis-replica", "ingress"]:
        assert "healthcheck" in services[name], name
    for name in workers:
        assert services[name]["command"][0] == QUEUE
        assert "--health-port" in services[name]["command"]
    assert (DEPLOY / "Dockerfile").exists() and (DEPLOY / "otel-collector.yaml").exists()
    yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())


def test_dockerfile_runs_the_worker_as_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))
    entrypoint = re.findall(r"^ENTRYPOINT\s+(\[.*\])", text, re.M)[-1]
    assert '"streamflow", "worker"' in entrypoint


# ---------------------------------------------------------------- redis.conf, ACL, sentinel


def directives(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            found.setdefault(name.lower(), []).append(value.strip())
    return found


def test_redis_conf_is_safe_for_a_queue() -> None:
    conf = directives(REDIS_CONF)
    assert conf["appendonly"] == ["yes"]
    assert conf["appendfsync"] == ["everysec"]
    assert conf["maxmemory-policy"] == ["noeviction"]
    assert conf["protected-mode"] == ["yes"]
    assert conf["aclfile"] == ["/etc/redis/users.acl"]
    assert "requirepass" not in conf
    assert "stream-node-max-bytes" in conf and "slowlog-log-slower-than" in conf
    assert "latency-monitor-threshold" in conf


def acl_lines() -> list[str]:
    return [line for line in USERS_ACL.read_text().splitlines() if line.strip()]


def test_acl_users_are_documented_and_passwords_are_placeholders() -> None:
    users = [line.split()[1] for line in acl_lines()]
    assert users[0] == "default"
    assert {
        "default",
        "admin",
        "streamflow-worker",
        "streamflow-producer",
        "replica",
        "sentinel",
    } <= set(users)
    doc = USERS_ACL_DOC.read_text()
    for user in users:
        assert f"| `{user}` |" in doc, f"{user} is not described in {USERS_ACL_DOC.name}"
    for line in acl_lines():
        assert line.startswith("user ")
        for password in re.findall(r"\s>(\S+)", line):
            assert password.startswith("CHANGE_ME_"), line.split()[1]
    default = acl_lines()[0].split()
    assert "off" in default and "nopass" not in default


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert isinstance(port, int)
        return port


def acl_password(user: str) -> str:
    line = next(line for line in acl_lines() if line.split()[1] == user)
    match = re.search(r"\s>(\S+)", line)
    assert match
    return match.group(1)


def wait_until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (redis.ConnectionError, redis.ResponseError) as exc:
            last = exc
        time.sleep(0.05)
    pytest.fail(f"timed out; last result: {last!r}")


class Server:
    """A redis-server (or sentinel) process on a free loopback port."""

    def __init__(self, workdir: Path, conf: Path, *args: str, sentinel: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log = workdir / "server.log"
        argv = [str(REDIS_SERVER), str(conf)]
        if sentinel:
            argv.append("--sentinel")
        argv += [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            "--logfile",
            str(self.log),
            *args,
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self, user: str | None = None) -> redis.Redis:
        password = acl_password(user) if user else None
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=user,
            password=password,
            socket_timeout=5,
            decode_responses=True,
        )

    def wait_ready(self, user: str | None) -> None:
        def ping() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited: {self.log.read_text()[-2000:]}")
            with self.client(user) as client:
                return bool(client.ping())

        wait_until(ping)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_redis(tmp_path: Path, name: str, *args: str) -> Server:
    """Production redis.conf with the real users.acl; only paths and port are overridden."""
    workdir = tmp_path / name
    workdir.mkdir()
    shutil.copy(USERS_ACL, workdir / "users.acl")
    # `dir` is applied while the file is parsed, before command-line options: rewrite it.
    conf = re.sub(r"^dir .*$", f"dir {workdir}", REDIS_CONF.read_text(), flags=re.M)
    (workdir / "redis.conf").write_text(conf)
    server = Server(
        workdir,
        workdir / "redis.conf",
        "--aclfile",
        str(workdir / "users.acl"),
        "--maxmemory",
        "64mb",
        "--save",
        "",
        # Plaintext on the test's port: TLS has its own test (test_tls_production_setup).
        "--tls-port",
        "0",
        "--tls-replication",
        "no",
        *args,
    )
    try:
        server.wait_ready("admin")
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Server]:
    server = start_redis(tmp_path, "master")
    yield server
    server.stop()


@needs_redis
def test_redis_loads_conf_and_acl(master: Server) -> None:
    with master.client("admin") as admin:
        users = {line.split()[1] for line in admin.acl_list()}
        assert users == {line.split()[1] for line in acl_lines()}
        assert admin.info("memory")["maxmemory_policy"] == "noeviction"
        assert admin.config_get("appendonly")["appendonly"] == "yes"
        assert admin.config_get("appendfsync")["appendfsync"] == "everysec"
    with master.client() as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()


def deny(call: Any) -> None:
    # NOPERM, or inside a script: "The user executing the script can't run this command".
    with pytest.raises(redis.ResponseError, match=r"(?i)permission|can't run|no permissions"):
        call()


@needs_redis
def test_acl_worker_and_producer_can_do_their_job_and_no_more(master: Server) -> None:
    keys = QueueKeys(QUEUE)
    stream = keys.level("normal")
    with master.client("streamflow-producer") as producer:
        producer.xgroup_create(stream, "workers", id="0", mkstream=True)
        producer.xadd(stream, {"n": "payment.captured"})
        # A function runs with the caller's permissions: a function an admin loaded may run
        # the add commands...
        with master.client("admin") as admin:
            admin.function_load(
                "#!lua name=acl_test\n"
                "redis.register_function('acl_add', function(keys)"
                " redis.call('HSET', keys[1], 'state', 'waiting');"
                " return redis.call('XADD', keys[2], '*', 'n', 'x') end)\n"
                "redis.register_function('acl_ack', function(keys, args)"
                " return redis.call('XACK', keys[1], args[1], args[2]) end)", replace=True)
            sha = admin.script_load("return 1")
        producer.fcall("acl_add", 2, keys.status("pay_1"), stream)
        assert producer.xlen(stream) == 2
        # ...but a producer may not run Lua of its own, schedule, change the queue's settings,
        # read, ack, delete, or touch another queue's keys.
        deny(lambda: producer.eval("return 1", 0))
        deny(lambda: producer.evalsha(sha, 0))
        deny(lambda: producer.script_load("return 1"))
        deny(lambda: producer.function_load("#!lua name=mine\nreturn 1"))
        deny(lambda: producer.zadd(keys.delayed, {"job": 1}))
        deny(lambda: producer.hset(keys.meta, "paused", "1"))
        deny(lambda: producer.xadd(QueueKeys("refunds").level("normal"), {"n": "x"}))
        deny(lambda: producer.xreadgroup("workers", "c", {stream: ">"}))
        deny(lambda: producer.xack(stream, "workers", "0-1"))
        deny(lambda: producer.delete(stream))
        deny(lambda: producer.set("other:key", 1))
        deny(lambda: producer.config_get("maxmemory-policy"))

    with master.client("streamflow-worker") as worker:
        assert worker.info("memory")["maxmemory_policy"] == "noeviction"
        worker.client_setname("worker-1")
        entries = worker.xreadgroup("workers", "worker-1", {stream: ">"}, count=10)
        ids = [entry_id for _, batch in entries for entry_id, _ in batch]
        assert len(ids) == 2
        worker.xautoclaim(stream, "workers", "worker-2", 0, "0-0", count=10)
        assert worker.xpending(stream, "workers")["pending"] == 2
        assert worker.fcall("acl_ack", 1, stream, "workers", ids[0]) == 1
        deny(lambda: worker.eval("return 1", 0))
        deny(lambda: worker.evalsha(sha, 0))
        deny(lambda: worker.script_load("return 1"))
        deny(lambda: worker.function_load("#!lua name=mine\nreturn 1"))
        worker.xack(stream, "workers", ids[1])
        worker.hset(keys.workers, "worker-1", "{}")
        worker.zrangebyscore(keys.delayed, 0, 2)
        worker.set(keys.status("pay_1"), "done", px=1000)
        worker.incr(keys.limiter)
        worker.xgroup_delconsumer(stream, "workers", "worker-2")
        deny(lambda: worker.xgroup_destroy(stream, "workers"))
        deny(lambda: worker.keys("*"))
        deny(lambda: worker.flushall())
        deny(lambda: worker.get("other:key"))
        deny(lambda: worker.config_get("maxmemory-policy"))

    with master.client("monitor") as monitor:
        assert monitor.xlen(stream) == 2
        assert monitor.xpending(stream, "workers")["pending"] == 0
        monitor.xinfo_groups(stream)
        deny(lambda: monitor.xadd(stream, {"n": "x"}))
        deny(lambda: monitor.xinfo_stream(stream, full=True))
        deny(lambda: monitor.hgetall(keys.jobs))


@needs_redis
def test_replica_and_sentinel_users_work(master: Server, tmp_path: Path) -> None:
    replica = start_redis(tmp_path, "replica", "--replicaof", "127.0.0.1", str(master.port))
    sentinel_dir = tmp_path / "sentinel"
    sentinel_dir.mkdir()
    # What deploy/docker-compose.yml does to the template: master address and auth filled in.
    text = SENTINEL_CONF.read_text()
    text = re.sub(
        r"^sentinel monitor streamflow \S+ \d+",
        f"sentinel monitor streamflow 127.0.0.1 {master.port}",
        text,
        flags=re.M,
    )
    text = re.sub(r"^# (sentinel auth-(user|pass) )", r"\1", text, flags=re.M)
    assert f"sentinel auth-pass streamflow {acl_password('sentinel')}" in text
    conf = sentinel_dir / "sentinel.conf"
    conf.write_text(text)
    sentinel = Server(sentinel_dir, conf, "--tls-port", "0", "--tls-replication", "no",
                      sentinel=True)

    def sentinel_admin() -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=sentinel.port, username="sentinel-admin",
                           password="CHANGE_ME_sentinel_admin_password", socket_timeout=5,
                           decode_responses=True)

    try:
        with replica.client("admin") as admin:
            wait_until(lambda: admin.info("replication")["master_link_status"] == "up")
        wait_until(lambda: sentinel_admin().ping())
        with sentinel_admin() as client:
            assert client.sentinel_get_master_addr_by_name("streamflow") == (
                "127.0.0.1",
                master.port,
            )
            # The sentinel authenticates as `sentinel` and sees master and replica.
            wait_until(lambda: client.sentinel_master("streamflow")["num-slaves"] == 1)
            flags = client.sentinel_master("streamflow")["flags"]
            assert flags == {"master"} or flags == "master", flags
            assert client.sentinel_master("streamflow")["quorum"] == 2
        assert "myid" in conf.read_text(), "sentinel rewrites its config file"
    finally:
        sentinel.stop()
        replica.stop()


def test_compose_commands_parse_with_the_cli_options() -> None:
    """Every command compose gives the ingress and the workers is one the CLI accepts, and the
    ingress listens on all interfaces inside its container (its published port needs it)."""
    import typer

    from consumers.razorpay.cli import app as razorpay_app
    from streamflow.cli import app as streamflow_app

    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    ingress = services["ingress"]["command"]
    assert ingress[ingress.index("--host") + 1] == "0.0.0.0"
    group: Any = typer.main.get_command(razorpay_app)
    with group.make_context("streamflow-razorpay", list(ingress), resilient_parsing=False) as ctx:
        name, command, args = group.resolve_command(ctx, list(ingress))
        assert command is not None
        command.make_context(name, args, parent=ctx)
    root: Any = typer.main.get_command(streamflow_app)
    for name in ("worker-1", "worker-2"):
        argv = ["worker", *services[name]["command"]]
        with root.make_context("streamflow", list(argv)) as ctx:
            sub, command, args = root.resolve_command(ctx, argv)
            assert command is not None
            command.make_context(sub, args, parent=ctx)


def test_only_workers_ingress_keda_and_redis_itself_reach_redis_and_sentinel() -> None:
    policy = only("NetworkPolicy", "streamflow-redis")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert spec["policyTypes"] == ["Ingress"]
    [rule] = spec["ingress"]
    assert {p["port"] for p in rule["ports"]} == {6379, 26379}
    sources = rule["from"]
    components = {s["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
                  for s in sources if "namespaceSelector" not in s}
    assert components == {"worker", "ingress", "redis"}
    keda = [s for s in sources if "namespaceSelector" in s]
    assert len(keda) == 1 and keda[0]["podSelector"]["matchLabels"] == {"app": "keda-operator"}
    assert all("ipBlock" not in s for s in sources), "no address range may reach Redis"
    # The worker pods match the rule that lets workers in.
    labels = only("Deployment")["spec"]["template"]["metadata"]["labels"]
    worker_rule = next(s["podSelector"]["matchLabels"] for s in sources
                       if s.get("podSelector", {}).get("matchLabels", {}).get(
                           "app.kubernetes.io/component") == "worker")
    assert worker_rule.items() <= labels.items()


def test_tls_is_on_in_every_production_template() -> None:
    for path in (REDIS_CONF, SENTINEL_CONF):
        conf = directives(path)
        assert conf["port"] == ["0"], f"{path.name} keeps a plaintext port"
        assert conf["tls-port"] and conf["tls-replication"] == ["yes"]
        assert conf["tls-ca-cert-file"] and conf["tls-cert-file"] and conf["tls-key-file"]
    assert only("ConfigMap")["data"]["STREAMFLOW_REDIS__TLS_CA_FILE"].endswith("ca.crt")
    mounts = {m["name"]: m["mountPath"] for m in worker_container()["volumeMounts"]}
    ca_file = only("ConfigMap")["data"]["STREAMFLOW_REDIS__TLS_CA_FILE"]
    assert ca_file.startswith(mounts["redis-tls"])
    auth = only("TriggerAuthentication")["spec"]["secretTargetRef"]
    assert {"tls", "ca", "sentinelUsername", "sentinelPassword"} <= {r["parameter"] for r in auth}
    compose_env_ = compose_env(compose()["services"]["worker-1"])
    assert compose_env_["STREAMFLOW_REDIS__TLS_CA_FILE"].endswith("ca.crt")
