//! The Kubernetes manifests in deploy/kubernetes/ against the real server:
//! no cluster runs here, so scripts/check_deploy.py reads them and checks
//! every field that must agree with wgserve (flags, port, probes, grace
//! periods, labels, the metric names the endpoint picker reads) against
//! `wgserve serve --help` and a scrape of a running server's /metrics.
//! Planted faults in copies of the manifests prove the checker can fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::server::Server;
use common::temp_dir::TempDir;

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");
const CHECKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_deploy.py");
/// The tests' venv (tests/openai_client/run.sh makes it); the checker needs PyYAML.
const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-openai");
const PYYAML: &str = "pyyaml==6.0.3";

/// What the checker compares the manifests with, written beside them.
struct ServerFacts {
    dir: TempDir,
}

impl ServerFacts {
    fn collect() -> Self {
        let dir = TempDir::new("deploy", "facts");
        let server = Server::start(&[]);
        let metrics = server.get("/metrics");
        assert_eq!(metrics.status, 200, "{}", String::from_utf8_lossy(&metrics.body));
        std::fs::write(dir.0.join("metrics.txt"), &metrics.body).unwrap();
        let help = Command::new(env!("CARGO_BIN_EXE_wgserve")).args(["serve", "--help"]).output().unwrap();
        assert!(help.status.success(), "wgserve serve --help failed");
        std::fs::write(dir.0.join("serve-help.txt"), &help.stdout).unwrap();
        ServerFacts { dir }
    }

    fn check(&self, manifests: &Path) -> Output {
        Command::new(python_with_yaml())
            .arg(CHECKER)
            .arg("--dir")
            .arg(manifests)
            .arg("--metrics-file")
            .arg(self.dir.0.join("metrics.txt"))
            .arg("--serve-help")
            .arg(self.dir.0.join("serve-help.txt"))
            .output()
            .expect("cannot run scripts/check_deploy.py")
    }
}

/// The venv's Python with PyYAML, made or completed on first use.
fn python_with_yaml() -> PathBuf {
    let python = Path::new(VENV).join("bin/python");
    if !python.exists() {
        let made = Command::new("python3").args(["-m", "venv", VENV]).status().expect("run python3");
        assert!(made.success(), "cannot make {VENV}: run scripts/setup.sh --test (python3-venv)");
    }
    let has_yaml = Command::new(&python).args(["-c", "import yaml"]).output().unwrap().status.success();
    if !has_yaml {
        let pip = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", PYYAML];
        assert!(Command::new(&python).args(pip).status().unwrap().success(), "pip install {PYYAML} failed");
    }
    python
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A copy of the manifests with `from` replaced by `to` in `file`.
fn planted_copy(name: &str, file: &str, from: &str, to: &str) -> TempDir {
    let copy = TempDir::new("deploy", name);
    for entry in std::fs::read_dir(MANIFESTS).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.0.join(path.file_name().unwrap())).unwrap();
    }
    let target = copy.0.join(file);
    let original = std::fs::read_to_string(&target).unwrap();
    assert!(original.contains(from), "{file} no longer contains {from:?}: update the planted fault");
    std::fs::write(&target, original.replacen(from, to, 1)).unwrap();
    copy
}

#[test]
fn the_manifests_agree_with_the_server_and_planted_faults_fail() {
    let facts = ServerFacts::collect();

    let real = facts.check(Path::new(MANIFESTS));
    assert!(real.status.success(), "deploy/kubernetes disagrees with wgserve:\n{}", text(&real));
    assert!(text(&real).contains("all checks passed"), "{}", text(&real));

    // (name, file, text, replacement, the failure line it must produce)
    let faults = [
        (
            "port",
            "wgserve-deployment.yaml",
            "containerPort: 8000",
            "containerPort: 8001",
            "FAIL: containerPort",
        ),
        (
            "grace",
            "wgserve-deployment.yaml",
            "terminationGracePeriodSeconds: 60",
            "terminationGracePeriodSeconds: 35",
            "FAIL: terminationGracePeriodSeconds",
        ),
        (
            "probe",
            "wgserve-deployment.yaml",
            "path: /health",
            "path: /healthz",
            "FAIL: startupProbe GETs /health",
        ),
        (
            "flag",
            "wgserve-deployment.yaml",
            "- --no-embedding-model",
            "- --no-embeddings",
            "FAIL: `wgserve serve --help` lists --no-embeddings",
        ),
        (
            "selector",
            "wgserve-service.yaml",
            "    app.kubernetes.io/name: wgserve\n  ports",
            "    app.kubernetes.io/name: wgserve-old\n  ports",
            "FAIL: one Service selects the wgserve pods",
        ),
        (
            "pool-port",
            "inferencepool.yaml",
            "- number: 8000",
            "- number: 8080",
            "FAIL: InferencePool targetPorts",
        ),
        (
            "metric",
            "epp-config.yaml",
            "\"vllm:num_requests_waiting\"",
            "\"vllm:num_requests_queued\"",
            "FAIL: wgserve.queuedRequestsSpec vllm:num_requests_queued is exported",
        ),
        // Without wgserve's engine config the picker reads vLLM's defaults,
        // which name metrics wgserve does not export (LoRA, cache config).
        (
            "engine",
            "wgserve-deployment.yaml",
            "llm-d.ai/engine-type: wgserve",
            "llm-d.ai/engine-type: vllm",
            "FAIL: vllm.loraSpec vllm:lora_requests_info is exported",
        ),
    ];
    for (name, file, from, to, failure) in faults {
        let copy = planted_copy(name, file, from, to);
        let output = facts.check(&copy.0);
        let printed = text(&output);
        assert!(!output.status.success(), "the checker missed the planted fault {name}:\n{printed}");
        assert!(printed.contains(failure), "planted fault {name}: expected {failure:?} in\n{printed}");
    }
}
