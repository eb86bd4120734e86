#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/kubernetes/ against a real wgserve.

No cluster runs here, so this reads the manifests (PyYAML) and checks the
fields that must agree with wgserve itself: the serve flags exist (from
`wgserve serve --help`), the container port, probes, Service and
InferencePool ports are `--port`, the termination grace period covers the
preStop sleep and `--shutdown-grace`, the labels and selectors match, and
the metric names the endpoint picker reads are among those a real server
exports (from a scrape of its /metrics).

    check_deploy.py --metrics-file SCRAPE --serve-help HELP [--dir DIR]

Prints one line per check ("ok: ..." or "FAIL: ..."); exits 1 listing every
failure. tests/deploy_manifests.rs runs it from `make test`.
"""

import argparse
import re
import sys
from pathlib import Path

import yaml

# llm-d-router v0.10.0 (pkg/epp/.../extractor/metrics): the engine label,
# the default engine, and its built-in metric names, which a pod reads
# unless the EndpointPickerConfig overrides them.
ENGINE_LABEL_KEY = "llm-d.ai/engine-type"
DEFAULT_ENGINE = "vllm"
BUILTIN_ENGINES = {
    "vllm": {
        "queuedRequestsSpec": "vllm:num_requests_waiting",
        "runningRequestsSpec": "vllm:num_requests_running",
        "kvUsageSpec": "vllm:kv_cache_usage_perc",
        "loraSpec": "vllm:lora_requests_info",
        "cacheInfoSpec": "vllm:cache_config_info",
    },
}
# The metric specs of an engine config, and the Prometheus type each needs
# (the Model Server Protocol's metrics are all gauges, some labelled).
METRIC_SPECS = {
    "queuedRequestsSpec": "gauge",
    "runningRequestsSpec": "gauge",
    "kvUsageSpec": "gauge",
    "loraSpec": "gauge",
    "cacheInfoSpec": "gauge",
    "cacheBlockSizeSpec": "gauge",
    "cacheNumBlocksSpec": "gauge",
}
# EPP flags that once named metrics; llm-d-router v0.10.0 refuses them.
DEPRECATED_EPP_METRIC_FLAGS = {
    "--total-queued-requests-metric",
    "--total-running-requests-metric",
    "--kv-cache-usage-percentage-metric",
    "--lora-info-metric",
    "--cache-info-metric",
}
INFERENCE_POOL_API = "inference.networking.k8s.io/v1"


class Report:
    """One line per check; remembers the failures."""

    def __init__(self):
        self.failures = []

    def check(self, passed, what):
        print(f"{'ok' if passed else 'FAIL'}: {what}")
        if not passed:
            self.failures.append(what)
        return passed


# --- inputs -----------------------------------------------------------------


def load_documents(directory):
    """Every YAML document of every .yaml file, as (file name, document)."""
    documents = []
    for path in sorted(Path(directory).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path.name, document))
    return documents


def parse_metrics(text):
    """{metric family or sample name: type} from Prometheus/OpenMetrics text."""
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind.strip()
    exported = dict(types)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample = re.split(r"[{\s]", line, maxsplit=1)[0]
            family = max((n for n in types if sample.startswith(n)), key=len, default=None)
            exported.setdefault(sample, types.get(family, "untyped"))
    return exported


def parse_help_flags(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


# --- manifest helpers ---------------------------------------------------------


def find(documents, kind, predicate=lambda d: True):
    return [(name, d) for name, d in documents if d.get("kind") == kind and predicate(d)]


def is_wgserve_container(container):
    command = list(container.get("command") or []) + list(container.get("args") or [])
    return len(command) >= 2 and command[0].endswith("wgserve") and command[1] == "serve"


def wgserve_container(deployment):
    containers = deployment["spec"]["template"]["spec"].get("containers") or []
    return next((c for c in containers if is_wgserve_container(c)), None)


def serve_flags(container):
    """{flag: value or True} of the `wgserve serve` command line."""
    words = [str(w) for w in list(container.get("command") or []) + list(container.get("args") or [])][2:]
    flags, i = {}, 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and "=" in word:
            name, value = word.split("=", 1)
            flags[name] = value
        elif word.startswith("--") and i + 1 < len(words) and not words[i + 1].startswith("--"):
            flags[word] = words[i + 1]
            i += 1
        elif word.startswith("--"):
            flags[word] = True
        i += 1
    return flags


def resolve_port(port, container):
    """A port number, or a named port of the container, as an int."""
    if isinstance(port, int):
        return port
    for entry in container.get("ports") or []:
        if entry.get("name") == port:
            return entry.get("containerPort")
    return int(port) if str(port).isdigit() else None


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def prestop_sleep_seconds(container):
    pre_stop = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = ((pre_stop.get("exec") or {}).get("command")) or []
    if len(command) == 2 and command[0].split("/")[-1] == "sleep":
        return int(command[1])
    return 0


def json_pointer_exists(document, pointer):
    node = document
    for part in pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


# --- checks -------------------------------------------------------------------


def check_kustomization(report, directory, documents):
    files = {p.name for p in Path(directory).glob("*.yaml")} - {"kustomization.yaml"}
    kustomizations = find(documents, "Kustomization")
    if not report.check(len(kustomizations) == 1, "one kustomization.yaml"):
        return
    listed = set(kustomizations[0][1].get("resources") or [])
    missing = sorted(listed ^ files) or "none"
    report.check(listed == files, f"kustomization resources list every manifest; differing: {missing}")


def check_gpu_patches(report, directory, deployment):
    """The vendor patches commented out in kustomization.yaml name real paths."""
    text = (Path(directory) / "kustomization.yaml").read_text()
    block = text.split("# patches:", 1)
    if len(block) < 2:
        return
    commented = [line for line in block[1].splitlines() if line.startswith("#")]
    lines = [line[2:] if line.startswith("# ") else line[1:] for line in commented]
    patches = yaml.safe_load("patches:\n" + "\n".join(lines))["patches"]
    for patch in patches:
        for op in yaml.safe_load(patch["patch"]):
            report.check(
                json_pointer_exists(deployment, op["from"]),
                f"kustomization.yaml's GPU patch moves an existing field: {op['from']} -> {op['path']}",
            )


def check_wgserve(report, deployment, help_flags):
    """The wgserve container's command, port, probes, grace and GPU; returns its --port."""
    container = wgserve_container(deployment)
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    flags = serve_flags(container)
    for flag in sorted(flags):
        report.check(flag in help_flags, f"`wgserve serve --help` lists {flag}")
    host = flags.get("--host")
    report.check(host == "0.0.0.0", f"--host is 0.0.0.0, reachable on the pod IP: {host}")
    port_flag = flags.get("--port")
    port = int(port_flag) if str(port_flag).isdigit() else None
    report.check(port is not None, f"--port is set: {port_flag}")
    container_ports = [p.get("containerPort") for p in container.get("ports") or []]
    report.check(port in container_ports, f"containerPort {container_ports} includes --port {port}")
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = (container.get(probe_name) or {}).get("httpGet") or {}
        path, probe_port = probe.get("path"), resolve_port(probe.get("port"), container)
        report.check(
            path == "/health" and probe_port == port,
            f"{probe_name} GETs /health on {port}: {path} on {probe_port}",
        )
    startup = container.get("startupProbe") or {}
    startup_seconds = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    report.check(startup_seconds >= 300, f"startupProbe allows >= 300 s to load the model: {startup_seconds} s")
    grace = float(flags.get("--shutdown-grace", 10))
    sleep = prestop_sleep_seconds(container)
    termination = pod.get("terminationGracePeriodSeconds", 30)
    report.check(sleep > 0, f"preStop sleeps before SIGTERM: {sleep} s")
    report.check(
        termination >= sleep + grace,
        f"terminationGracePeriodSeconds {termination} >= preStop sleep {sleep} + --shutdown-grace {grace:g}",
    )
    limits = (container.get("resources") or {}).get("limits") or {}
    gpus = {name: value for name, value in limits.items() if "gpu" in name or name.endswith("/i915")}
    report.check(list(gpus.values()) == [1], f"limits ask for exactly one GPU: {gpus}")
    model = flags.get("--model")
    mounts = [m.get("mountPath", "").rstrip("/") + "/" for m in container.get("volumeMounts") or []]
    report.check(
        isinstance(model, str) and any(model.startswith(m) for m in mounts),
        f"--model {model} lies on a mounted volume {mounts}",
    )
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    report.check(labels_match(selector, pod_labels), f"Deployment selector {selector} matches its pod labels")
    return port


def check_service(report, documents, port, container, pod_labels):
    services = find(documents, "Service", lambda d: labels_match(d["spec"].get("selector"), pod_labels))
    names = [d["metadata"]["name"] for _, d in services]
    if not report.check(len(services) == 1, f"one Service selects the wgserve pods: {names}"):
        return
    spec = services[0][1]["spec"]
    report.check(spec.get("type", "ClusterIP") == "ClusterIP", f"Service type ClusterIP: {spec.get('type')}")
    targets = [resolve_port(p.get("targetPort", p.get("port")), container) for p in spec.get("ports") or []]
    report.check(port in targets, f"Service targetPort {targets} is --port {port}")


def check_inference_pool(report, documents, port, pod_labels):
    """Returns (pool name, picker Service name) for the picker's checks."""
    pools = find(documents, "InferencePool")
    if not report.check(len(pools) == 1, "one InferencePool"):
        return None, None
    pool = pools[0][1]
    spec = pool["spec"]
    api = pool.get("apiVersion")
    report.check(api == INFERENCE_POOL_API, f"InferencePool is {INFERENCE_POOL_API}: {api}")
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    report.check(labels_match(selector, pod_labels), f"InferencePool selector {selector} matches the pod labels")
    target_ports = [p.get("number") for p in spec.get("targetPorts") or []]
    # The picker scrapes /metrics on the first target port.
    report.check(target_ports[:1] == [port], f"InferencePool targetPorts {target_ports} start with --port {port}")
    picker = spec.get("endpointPickerRef") or {}
    services = find(documents, "Service", lambda d: d["metadata"]["name"] == picker.get("name"))
    service_ports = [p.get("port") for s in services for p in s[1]["spec"].get("ports") or []]
    picker_port = (picker.get("port") or {}).get("number")
    report.check(
        picker_port in service_ports,
        f"endpointPickerRef {picker.get('name')}:{picker_port} is a Service port {service_ports}",
    )
    return pool["metadata"]["name"], picker.get("name")


def picker_config(documents, deployment):
    """The EndpointPickerConfig its --config-file names, from the mounted ConfigMap."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [str(a) for a in container.get("args") or []]
    path = args[args.index("--config-file") + 1] if "--config-file" in args else None
    if path is None:
        return None
    directory, key = path.rsplit("/", 1)
    mount = next((m for m in container.get("volumeMounts") or [] if m["mountPath"].rstrip("/") == directory), None)
    volumes = deployment["spec"]["template"]["spec"].get("volumes") or []
    volume = next((v for v in volumes if mount and v["name"] == mount["name"]), {})
    config_map = (volume.get("configMap") or {}).get("name")
    for _, document in find(documents, "ConfigMap", lambda d: d["metadata"]["name"] == config_map):
        if key in (document.get("data") or {}):
            return yaml.safe_load(document["data"][key])
    return None


def check_picker(report, documents, pool_name, picker_service, pod_labels, exported):
    services = find(documents, "Service", lambda d: d["metadata"]["name"] == picker_service)
    if not report.check(len(services) == 1, f"the endpoint picker's Service {picker_service} exists"):
        return
    selector = services[0][1]["spec"].get("selector") or {}
    deployments = find(
        documents,
        "Deployment",
        lambda d: labels_match(selector, d["spec"]["template"]["metadata"].get("labels") or {}),
    )
    if not report.check(len(deployments) == 1, f"the picker's Service selects one Deployment: {selector}"):
        return
    deployment = deployments[0][1]
    args = [str(a) for a in deployment["spec"]["template"]["spec"]["containers"][0].get("args") or []]
    pool_arg = args[args.index("--pool-name") + 1] if "--pool-name" in args else None
    report.check(pool_arg == pool_name, f"the picker's --pool-name {pool_arg} is the InferencePool {pool_name}")
    used = sorted(DEPRECATED_EPP_METRIC_FLAGS & {a.split("=")[0] for a in args})
    report.check(not used, f"the picker uses no metric-name flags (refused since llm-d-router v0.10): {used}")
    config = picker_config(documents, deployment)
    if not report.check(config is not None, "the picker's --config-file is in its mounted ConfigMap"):
        return
    plugins = {p.get("type"): p.get("parameters") or {} for p in config.get("plugins") or []}
    source = plugins.get("metrics-data-source", {})
    report.check(
        source.get("path", "/metrics") == "/metrics" and source.get("scheme", "http") == "http",
        f"the picker scrapes http /metrics: {source.get('scheme', 'http')} {source.get('path', '/metrics')}",
    )
    extractor = plugins.get("core-metrics-extractor", {})
    label_key = extractor.get("engineLabelKey", ENGINE_LABEL_KEY)
    engine = pod_labels.get(label_key, extractor.get("defaultEngine", DEFAULT_ENGINE))
    configured = {c["name"]: c for c in extractor.get("engineConfigs") or []}
    specs = configured.get(engine, BUILTIN_ENGINES.get(engine))
    if not report.check(specs is not None, f"the picker has metric names for engine {engine}"):
        return
    for field, kind in METRIC_SPECS.items():
        check_metric_spec(report, engine, field, specs.get(field, ""), kind, exported)
    for custom in specs.get("customMetrics") or []:
        check_metric_spec(report, engine, "customMetrics", custom["metricSpec"], None, exported)


def check_metric_spec(report, engine, field, spec, kind, exported):
    if not spec:
        return
    name = spec.split("{", 1)[0]
    found = exported.get(name)
    report.check(found is not None, f"{engine}.{field} {name} is exported by wgserve")
    if found is not None and kind is not None:
        report.check(found == kind, f"{engine}.{field} {name} is a {kind}: {found}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parent.parent / "deploy/kubernetes"))
    parser.add_argument("--metrics-file", required=True, help="a scrape of GET /metrics from a running wgserve")
    parser.add_argument("--serve-help", required=True, help="the output of `wgserve serve --help`")
    args = parser.parse_args()
    exported = parse_metrics(Path(args.metrics_file).read_text())
    help_flags = parse_help_flags(Path(args.serve_help).read_text())
    report = Report()
    documents = load_documents(args.dir)
    report.check(bool(documents), f"manifests parse as YAML in {args.dir}: {len(documents)} documents")
    check_kustomization(report, args.dir, documents)
    deployments = find(documents, "Deployment", lambda d: wgserve_container(d) is not None)
    if report.check(len(deployments) == 1, "one Deployment runs wgserve"):
        deployment = deployments[0][1]
        check_gpu_patches(report, args.dir, deployment)
        container = wgserve_container(deployment)
        pod_labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
        port = check_wgserve(report, deployment, help_flags)
        check_service(report, documents, port, container, pod_labels)
        pool_name, picker_service = check_inference_pool(report, documents, port, pod_labels)
        if picker_service:
            check_picker(report, documents, pool_name, picker_service, pod_labels, exported)
    if report.failures:
        print(f"{len(report.failures)} check(s) failed:", file=sys.stderr)
        for failure in report.failures:
            print(f"  {failure}", file=sys.stderr)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
