"""The deploy manifests (deploy/docker-compose.yml, deploy/k8s/) name only things that exist:
images we build or pin, ports the programs listen on, environment variables the code reads,
files in the repository, commands and settings the engine accepts."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml
from support.browser import REPO_ROOT

from saliency_core.cli import build_parser
from saliency_core.cli.serve import load_config
from saliency_core.serve.config import EngineConfig

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE = "saliency-workbench"
APP_PORT = 8501
HEALTH = "/_stcore/health"


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def compose() -> dict:
    return documents(DEPLOY / "docker-compose.yml")[0]


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d
            for path in sorted(K8S.glob("*.yaml")) for d in documents(path)}


def code_text() -> str:
    files = [REPO_ROOT / "app.py", *REPO_ROOT.glob("pages/*.py"),
             *REPO_ROOT.rglob("workbench/**/*.py"), *REPO_ROOT.rglob("saliency_core/**/*.py")]
    return "\n".join(p.read_text() for p in files)


def test_every_manifest_parses():
    paths = [*DEPLOY.glob("*.yml"), *DEPLOY.glob("*.yaml"), *K8S.glob("*.yaml")]
    assert len(paths) >= 5
    for path in paths:
        assert documents(path), path


def test_images_are_built_here_or_pinned(compose, k8s):
    for name, service in compose["services"].items():
        image = service["image"]
        if image.startswith(IMAGE + ":"):
            build = service["build"]
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        else:
            assert re.match(r"^[a-z0-9./-]+:[A-Za-z0-9._-]+$", image) and \
                not image.endswith(":latest"), f"{name}: pin external images ({image})"
    for key, doc in k8s.items():
        for container in containers(doc):
            assert container["image"].split(":")[0] == IMAGE, key
    assert f"-t {IMAGE}" in (REPO_ROOT / "README.md").read_text()


def containers(doc: dict) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "containers" in node:
                found.extend(node["containers"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


def test_environment_variables_are_read_by_the_code(compose, k8s):
    named = set(re.findall(r"\bSALIENCY_[A-Z0-9_]+\b", "\n".join(
        p.read_text() for p in [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])))
    assert {"SALIENCY_ENGINE_URL", "SALIENCY_S3_BUCKET", "SALIENCY_CACHE"} <= named
    code = code_text()
    unknown = sorted(v for v in named if f'"{v}"' not in code)
    assert not unknown, f"named in deploy/ but read nowhere: {unknown}"


def test_ports_and_health_checks_match_the_programs(compose, k8s):
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert f"EXPOSE {APP_PORT}" in dockerfile and HEALTH in dockerfile
    caddy = (DEPLOY / "Caddyfile").read_text()
    upstreams = re.findall(r"([a-z0-9-]+):(\d+)", caddy.split("reverse_proxy", 1)[1].split("{")[0])
    assert len(upstreams) == 2
    for host, port in upstreams:
        assert host in compose["services"] and int(port) == APP_PORT
    assert f"health_uri {HEALTH}" in caddy and "lb_policy cookie" in caddy
    engine_url = compose["services"]["app-1"]["environment"]["SALIENCY_ENGINE_URL"]
    assert engine_url == "http://ray-head:8000" and "8000:8000" in compose["services"]["ray-head"]["ports"]
    app = k8s["Deployment/saliency-app"]["spec"]["template"]["spec"]["containers"][0]
    assert app["ports"][0]["containerPort"] == APP_PORT
    for probe in ("readinessProbe", "livenessProbe"):
        assert app[probe]["httpGet"] == {"path": HEALTH, "port": APP_PORT}
    service = k8s["Service/saliency-app"]["spec"]["ports"][0]
    assert service["targetPort"] == APP_PORT
    ingress = k8s["Ingress/saliency-app"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "saliency-app", "port": {"number": service["port"]}}
    config = k8s["ConfigMap/saliency-config"]["data"]
    # KubeRay names the Serve service <RayService name>-serve-svc.
    assert config["SALIENCY_ENGINE_URL"] == "http://saliency-engine-serve-svc:8000"
    assert "RayService/saliency-engine" in k8s


def test_references_between_manifests_resolve(k8s):
    app = k8s["Deployment/saliency-app"]["spec"]["template"]["spec"]
    for source in app["containers"][0]["envFrom"]:
        kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source \
            else ("Secret", source["secretRef"])
        assert f"{kind}/{ref['name']}" in k8s
    secret_files = [v["secret"]["secretName"] for v in app["volumes"] if "secret" in v]
    assert secret_files == ["workbench-secrets"]
    assert "[auth]" in k8s["Secret/workbench-secrets"]["stringData"]["secrets.toml"]
    claims = re.findall(r"claimName: (\S+)", yaml.safe_dump(list(k8s.values())))
    assert claims and all(f"PersistentVolumeClaim/{c}" in k8s for c in claims)
    args = app["containers"][0]["args"]
    # The hosted configuration, as in the Docker image (tests/test_foundation_docker.py).
    assert args[:4] == ["python", "-m", "workbench.serve", "hosted"] and (REPO_ROOT / args[4]).is_file()


def test_compose_files_and_commands_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: {source}"
    shell = shlex.split(compose["services"]["ray-head"]["command"])
    assert shell[:2] == ["bash", "-c"]
    command = shlex.split(shell[2].split("&&", 1)[1])
    assert command[:3] == ["python", "-m", "saliency_core"]
    args = build_parser().parse_args(command[3:])
    config_path = args.config.replace("deploy/", "")
    assert (DEPLOY / config_path).is_file()
    assert isinstance(load_config(str(DEPLOY / config_path), args), EngineConfig)


def test_the_rayservice_application_is_importable_with_valid_settings(k8s):
    serve_config = yaml.safe_load(k8s["RayService/saliency-engine"]["spec"]["serveConfigV2"])
    (application,) = serve_config["applications"]
    module, _, attr = application["import_path"].partition(":")
    assert importlib.util.find_spec(module) is not None
    source = Path(importlib.util.find_spec(module).origin).read_text()
    assert f"def {attr}(args" in source  # a Serve application builder
    EngineConfig.from_dict(application["args"])
    ray_version = k8s["RayService/saliency-engine"]["spec"]["rayClusterConfig"]["rayVersion"]
    assert f"ray[serve]=={ray_version}" in (REPO_ROOT / "requirements.txt").read_text()
