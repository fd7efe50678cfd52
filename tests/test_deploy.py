"""The deployment files (docs/deployment.md): the Kubernetes manifests valid against the API's schemas and
saying what the docs promise, the Compose file and its nginx, `manage.py prepare`, and the image itself where
this machine can build and run one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection

from routing.management.commands.prepare import LOCK_KEY
from routing.models import ModelAlias, Upstream
from tests.liveserver import ROOT, database_url, free_port

KUBERNETES = ROOT / "deploy" / "kubernetes"
DOCS = (ROOT / "docs" / "deployment.md").read_text()
# The oldest Kubernetes release still supported upstream when this was written, and the newest the validator has.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version() + ".0")


# --- Kubernetes ---------------------------------------------------------------------------------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` (or `kustomize build`) of `directory`, as objects. The example overlay needs its
    secrets.env: rendered from a copy with the example file in its place."""
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize"]
    elif shutil.which("kustomize"):
        command = ["kustomize", "build"]
    else:
        pytest.skip("neither kubectl (kubectl kustomize) nor kustomize is installed: the manifests cannot be rendered")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "kubernetes"
        shutil.copytree(KUBERNETES, copy, ignore=shutil.ignore_patterns("secrets.env"))
        target = copy / directory.relative_to(KUBERNETES)
        if (target / "secrets.env.example").exists():
            shutil.copy(target / "secrets.env.example", target / "secrets.env")
        rendered = subprocess.run([*command, str(target)], capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return kustomize(KUBERNETES / "base")


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return kustomize(KUBERNETES / "overlays" / "example")


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def configmap(objects: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(prefix)]
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("which", ["base", "overlay"])
def test_every_kubernetes_object_is_valid_for_the_api(which, version, request):
    objects = request.getfixturevalue(which)
    kinds = sorted(o["kind"] for o in objects)
    expected = ["ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret"]
    expected += ["Service"] + (["Ingress", "Namespace"] if which == "overlay" else [])
    assert kinds == sorted(expected)
    for obj in objects:
        try:  # strict: a field the API does not know (a typo, a wrong indentation) is an error too
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} (Kubernetes {version}): {exc.message} at {exc.path}")


def test_an_invalid_object_is_refused_by_the_validator(base):
    """The check above can fail: a misspelt field in the Deployment's pod is caught."""
    deployment = one(base, "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/health/ready"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_pods_probe_readiness_and_liveness_and_outlast_their_drain(overlay):
    deployment = one(overlay, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["image"] == "registry.example.com/llmproxy:1.0.0"
    env = configmap(overlay, "llmproxy-env")["data"]
    assert {ref["configMapRef"]["name"] for ref in server["envFrom"] if "configMapRef" in ref} == {
        configmap(overlay, "llmproxy-env")["metadata"]["name"]
    }
    assert {ref["secretRef"]["name"] for ref in server["envFrom"] if "secretRef" in ref} == {"llmproxy-secrets"}
    # Kubernetes kills after terminationGracePeriodSeconds: later than supervisord gives up on a worker, which is
    # itself never before the drain delay, the grace and the last write (llmproxy_site.serve).
    drain = float(env["DRAIN_DELAY_SECONDS"]) + float(env["SHUTDOWN_GRACE_SECONDS"]) + 1
    assert float(env["WORKER_STOP_TIMEOUT"]) >= drain
    assert pod["terminationGracePeriodSeconds"] > float(env["WORKER_STOP_TIMEOUT"])
    # A readiness failure takes the pod out well within the drain delay.
    probe = server["readinessProbe"]
    assert probe["periodSeconds"] * probe.get("failureThreshold", 3) <= float(env["DRAIN_DELAY_SECONDS"])
    requests = server["resources"]["requests"]
    assert set(requests) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in server["volumeMounts"]} >= {"/tmp", "/data"}  # run dir and ledger spool
    assert env["LEDGER_SPOOL_DIR"].startswith("/data/")


def test_every_pod_prepares_the_database_and_applies_the_configmap_first(overlay, tmp_path, transactional_db):
    pod = one(overlay, "Deployment")["spec"]["template"]["spec"]
    (prepare,) = pod["initContainers"]
    assert prepare["image"] == pod["containers"][0]["image"]
    assert prepare["command"][:3] == ["python", "manage.py", "prepare"]
    (config_path,) = prepare["command"][3:]
    (mount,) = [m for m in prepare["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config = configmap(overlay, "llmproxy-config")
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    # The ConfigMap's file is one importconfig applies, naming only keys the Secret holds.
    text = config["data"][Path(config_path).name]
    path = tmp_path / "llmproxy.yaml"
    path.write_text(text)
    call_command("prepare", str(path), stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert set(Upstream.objects.values_list("name", flat=True)) == {"openai", "anthropic", "gemini"}
    secret = one(overlay, "Secret")
    key_names = {u["api_key_env"] for u in yaml.safe_load(text)["upstreams"] if u.get("api_key_env")}
    assert key_names <= set(secret.get("data") or secret.get("stringData") or {})
    assert {"SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL"} <= set(secret.get("data") or {})


def test_service_autoscaler_and_disruption_budget_reach_the_deployments_pods(overlay):
    deployment = one(overlay, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service = one(overlay, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    pdb = one(overlay, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(overlay, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llmproxy"}
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    ingress = one(overlay, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    (rule,) = ingress["spec"]["rules"]
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == service["metadata"]["name"]


# --- Compose ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def documented_services() -> set[str]:
    """The services docs/deployment.md lists in its Compose section's table."""
    section = DOCS.split("\n## Compose\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z0-9-]+)`", row.split("|")[1])}


def test_the_compose_file_has_every_service_the_docs_name(compose):
    assert (
        documented_services()
        == set(compose["services"])
        == {
            "postgres",
            "redis",
            "prepare",
            "proxy-1",
            "proxy-2",
            "nginx",
        }
    )


def test_the_replicas_start_after_prepare_on_postgresql_and_redis(compose):
    services = compose["services"]
    replicas = [name for name in services if name.startswith("proxy-")]
    assert len(replicas) >= 2
    for name in replicas:
        service = services[name]
        assert service["image"] == services["prepare"]["image"]
        assert service["depends_on"]["prepare"] == {"condition": "service_completed_successfully"}
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["HOST"] == "0.0.0.0"
        assert service["env_file"] == ".env"
    assert len({services[name]["volumes"][0].split(":")[0] for name in replicas}) == len(replicas)  # own spools
    command = services["prepare"]["command"]
    assert command[:3] == ["python", "manage.py", "prepare"]
    (mounted,) = [v for v in services["prepare"]["volumes"] if v.split(":")[1] == command[3]]
    assert (ROOT / mounted.split(":")[0]).is_file()


def test_nginx_balances_the_replicas_without_buffering_streams(compose):
    services = compose["services"]
    (conf_mount,) = services["nginx"]["volumes"]
    conf = (ROOT / conf_mount.split(":")[0]).read_text()
    upstream = re.search(r"upstream llmproxy \{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = set(re.findall(r"^\s*server ([a-z0-9-]+):8080", upstream.group(1), re.M))
    assert servers == {name for name in services if name.startswith("proxy-")}
    assert "keepalive" not in re.sub(r"#.*", "", upstream.group(1))
    for directive in (
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "client_max_body_size 64m;",
    ):
        assert directive in conf
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", conf)
    assert read_timeout is not None and int(read_timeout.group(1)) >= 3600
    address = services["nginx"]["networks"]["llmproxy"]["ipv4_address"]
    assert services["proxy-1"]["environment"]["TRUSTED_PROXIES"] == address


def test_the_env_example_names_every_variable_the_deployment_needs(compose):
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", example, re.M))
    needed = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "compose.yaml").read_text()))
    needed |= {"SECRET_KEY", "ENCRYPTION_KEYS", "ADMIN_PASSWORD", "ALLOWED_HOSTS"}
    config = yaml.safe_load((ROOT / "deploy" / "llmproxy.yaml").read_text())
    needed |= {u["api_key_env"] for u in config["upstreams"] if u.get("api_key_env")}
    assert needed <= named, needed - named


# --- manage.py prepare --------------------------------------------------------------------------------


def test_prepare_migrates_makes_the_admin_and_applies_config_files_again_and_again(transactional_db, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text((ROOT / "deploy" / "llmproxy.yaml").read_text())
    for _ in range(2):
        call_command("prepare", str(path), stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert User.objects.filter(is_superuser=True).count() == 1
    assert Upstream.objects.count() == 3
    assert ModelAlias.objects.count() == 3


def test_concurrent_prepares_on_postgresql_take_turns(transactional_db, tmp_path):
    """Held lock: a second `prepare` waits and says so, then runs once the first is done."""
    if connection.vendor != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's; SQLite runs prepare without one")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(DATABASE_URL=database_url(connection.settings_dict), PYTHONUNBUFFERED="1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    released = False
    try:
        waiting = subprocess.Popen(
            [sys.executable, "manage.py", "prepare"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert waiting.stdout is not None
        first = waiting.stdout.readline()
        assert "waiting" in first, first
        time.sleep(1.5)
        assert waiting.poll() is None  # still waiting
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        released = True
        output, _ = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, output
    finally:
        if not released:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


# --- the image ----------------------------------------------------------------------------------------

DEFAULT_BASE = "python:3.11-slim-bookworm"
BOOTSTRAPPED_BASE = "localhost/llmproxy-base:bookworm"
IMAGE = "localhost/llmproxy:test"
# The server processes in a container: `python -m llmproxy_site.server` (llmproxy_site.serve's workers).
COUNT_SERVERS = """
import pathlib
found = 0
for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
    args = cmdline.read_bytes().split(b"\\0")
    found += args[1:3] == [b"-m", b"llmproxy_site.server"]
print(found)
"""


def run(*command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def container_engine() -> str:
    """podman, or docker with a daemon; else the test skips saying which is missing."""
    if shutil.which("podman"):
        return "podman"
    if shutil.which("docker"):
        info = run("docker", "info", timeout=30, check=False)
        if info.returncode == 0:
            return "docker"
        pytest.skip(f"no podman, and docker has no daemon to build with: {info.stderr.strip().splitlines()[-1]}")
    pytest.skip("no container engine: neither podman nor docker is installed (Debian: apt-get install podman)")


def base_image(engine: str) -> str:
    """The Dockerfile's base image, pulled; else one bootstrapped from Debian packages (mmdebstrap)."""
    for image in (DEFAULT_BASE, BOOTSTRAPPED_BASE):
        if run(engine, "image", "inspect", image, check=False).returncode == 0:
            return image
    pulled = run(engine, "pull", DEFAULT_BASE, timeout=300, check=False)
    if pulled.returncode == 0:
        return DEFAULT_BASE
    if not shutil.which("mmdebstrap"):
        pytest.skip(
            f"cannot pull {DEFAULT_BASE} ({pulled.stderr.strip().splitlines()[-1]}) and mmdebstrap is not "
            "installed to bootstrap a base image from Debian packages (apt-get install mmdebstrap)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "base.tar"
        packages = "python3,python3-venv,ca-certificates"
        built = run("mmdebstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(tarball), timeout=900)
        assert built.returncode == 0
        run(engine, "import", str(tarball), BOOTSTRAPPED_BASE, timeout=300)
    return BOOTSTRAPPED_BASE


def build_options(engine: str) -> list[str]:
    """Builds see the network as the host does, and trust the certificate authorities it trusts (a proxy in
    front of PyPI may present its own): podman only, docker build has no volumes."""
    if engine != "podman":
        return []
    cafile = Path("/etc/ssl/certs/ca-certificates.crt")
    if not cafile.exists():
        return ["--network", "host"]
    pip_conf = Path(tempfile.mkdtemp()) / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {cafile}\n")
    return [
        "--network",
        "host",
        "--format",
        "docker",
        "-v",
        f"{cafile}:{cafile}:ro",
        "-v",
        f"{pip_conf}:/etc/pip.conf:ro",
    ]


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[str, str]]:
    engine = container_engine()
    base = base_image(engine)
    started = run(engine, "run", "--rm", "--network", "host", base, "python3", "-c", "print('ok')", check=False)
    if started.returncode != 0:
        pytest.skip(f"{engine} cannot start a container on this machine: {started.stderr.strip()}")
    build = [engine, "build", *build_options(engine), "--build-arg", f"PYTHON_IMAGE={base}", "-t", IMAGE, str(ROOT)]
    run(*build, timeout=1200)
    yield engine, IMAGE


@pytest.mark.e2e
def test_the_image_serves_healthz_as_non_root_without_compilers_and_drains_on_stop(image):
    engine, tag = image
    port = free_port()
    name = f"llmproxy-test-{port}"
    env = ["-e", f"PORT={port}", "-e", "SECRET_KEY=test-secret-key", "-e", "WORKERS=2", "-e", "ADMIN_PASSWORD=pw"]
    run(engine, "run", "-d", "--name", name, "--network", "host", *env, tag)
    logs: list[str] = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, run(engine, "logs", name, check=False).stdout
            time.sleep(0.5)
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        if engine == "podman":  # the image's own HEALTHCHECK command (docker runs it on its own schedule)
            assert run(engine, "healthcheck", "run", name, check=False).returncode == 0
        assert run(engine, "exec", name, "id", "-u").stdout.strip() == "10001"
        compilers = run(engine, "exec", name, "sh", "-c", "command -v gcc cc c++ make || true").stdout
        assert compilers.strip() == ""
        # Not ready before `prepare` (nothing migrated in the SQLite volume), ready after it.
        assert httpx.get(url + "/health/ready", timeout=10).status_code == 503
        run(engine, "exec", name, "python", "manage.py", "prepare", timeout=120)
        deadline = time.monotonic() + 20
        while httpx.get(url + "/health/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        servers = run(engine, "exec", name, "python", "-c", COUNT_SERVERS).stdout
        assert int(servers) == 2  # WORKERS

        # docker stop: SIGTERM, readiness 503 at once while still serving, then a clean stop of both workers.
        stopper = threading.Thread(target=lambda: logs.append(run(engine, "stop", "-t", "30", name).stdout))
        stopper.start()
        deadline = time.monotonic() + 5
        while httpx.get(url + "/health/ready", timeout=5).status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stopper.join(timeout=60)
        assert logs, "the container did not stop"
        output = run(engine, "logs", name)
        output = output.stdout + output.stderr
        assert "stopped: llmproxy_00 (exit status 0)" in output
        assert "stopped: llmproxy_01 (exit status 0)" in output
    finally:
        run(engine, "rm", "-f", name, check=False)
