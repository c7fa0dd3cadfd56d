//! What users install is accepted by a real kube-apiserver: `deploy/` (kustomize), its
//! monitoring objects, and the rendered Helm chart, each through `kubectl apply
//! --dry-run=server` (admission, schema validation, RBAC escalation checks).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn helm() -> PathBuf {
    if let Ok(path) = std::env::var("HELM") {
        return PathBuf::from(path);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache"));
    let path = cache.join("csr-approver/tools/bin/helm");
    assert!(
        path.exists(),
        "helm not found at {}: run scripts/tools.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `kubectl apply --dry-run=server -f -` of `manifests` against the shared control plane.
fn server_dry_run(cp: &support::ControlPlane, manifests: &str) -> String {
    ok(
        dry_run_output(cp, manifests),
        "kubectl apply --dry-run=server",
    )
}

fn dry_run_output(cp: &support::ControlPlane, manifests: &str) -> Output {
    let mut child = Command::new("kubectl")
        .args([
            "--kubeconfig",
            cp.kubeconfig_path().to_str().unwrap(),
            "apply",
            "--dry-run=server",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifests.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The namespace must exist for namespaced objects to dry-run; CRDs for the monitoring kinds.
fn prepared() -> &'static support::ControlPlane {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let cp = support::shared();
    READY.get_or_init(|| {
        ok(
            cp.kubectl(&["apply", "-f", &repo("deploy/namespace.yaml")]),
            "create namespace",
        );
        ok(
            cp.kubectl(&["apply", "-f", &repo("tests/fixtures/crds/monitoring/")]),
            "monitoring CRDs",
        );
        ok(
            cp.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/servicemonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com",
            ]),
            "CRDs established",
        );
    });
    cp
}

fn kustomize(dir: &str) -> String {
    ok(
        Command::new("kubectl")
            .args(["kustomize", &repo(dir)])
            .output()
            .unwrap(),
        "kubectl kustomize",
    )
}

fn helm_template(args: &[&str]) -> String {
    let out = Command::new(helm())
        .args([
            "template",
            "csr-approver",
            &repo("charts/csr-approver"),
            "--namespace",
            "csr-approver",
        ])
        .args(args)
        .output()
        .unwrap();
    ok(out, "helm template")
}

#[test]
fn deploy_kustomization_is_accepted_by_the_apiserver() {
    let cp = prepared();
    let applied = server_dry_run(cp, &kustomize("deploy"));
    for object in [
        "deployment.apps/csr-approver",
        "clusterrole.rbac.authorization.k8s.io/csr-approver",
        "poddisruptionbudget.policy/csr-approver",
        "configmap/csr-approver-policy",
    ] {
        assert!(
            applied.contains(object),
            "{object} missing from:\n{applied}"
        );
    }
}

#[test]
fn deploy_monitoring_is_accepted_by_the_apiserver() {
    let cp = prepared();
    let applied = server_dry_run(cp, &kustomize("deploy/monitoring"));
    assert!(
        applied.contains("prometheusrule.monitoring.coreos.com/csr-approver"),
        "{applied}"
    );
    assert!(
        applied.contains("servicemonitor.monitoring.coreos.com/csr-approver"),
        "{applied}"
    );
}

#[test]
fn helm_chart_with_default_values_is_accepted_by_the_apiserver() {
    let cp = prepared();
    let applied = server_dry_run(cp, &helm_template(&[]));
    assert!(
        applied.contains("deployment.apps/csr-approver"),
        "{applied}"
    );
}

#[test]
fn helm_chart_with_non_default_values_is_accepted_by_the_apiserver() {
    let cp = prepared();
    let rendered = helm_template(&[
        "-f",
        &repo("charts/csr-approver/ci/non-default-values.yaml"),
        "--api-versions",
        "monitoring.coreos.com/v1",
    ]);
    let applied = server_dry_run(cp, &rendered);
    assert!(
        applied.contains("prometheusrule.monitoring.coreos.com"),
        "{applied}"
    );
}

#[test]
fn an_invalid_manifest_is_refused_so_these_tests_can_fail() {
    let cp = prepared();
    let broken = kustomize("deploy").replace("replicas: 2", "replicas: two");
    assert!(!dry_run_output(cp, &broken).status.success());
}

/// The container args of every Deployment in `manifests`.
fn deployment_args(manifests: &str) -> Vec<Vec<String>> {
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(manifests).unwrap();
    documents
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|c| {
            let mut argv = vec!["csr-approver".to_string()];
            argv.extend(
                c["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string()),
            );
            argv
        })
        .collect()
}

#[test]
fn shipped_container_args_are_accepted_by_the_binarys_cli() {
    use clap::Parser;
    let rendered = [
        ("deploy/", kustomize("deploy")),
        ("chart (default values)", helm_template(&[])),
        (
            "chart (non-default values)",
            helm_template(&[
                "-f",
                &repo("charts/csr-approver/ci/non-default-values.yaml"),
            ]),
        ),
    ];
    for (what, manifests) in rendered {
        let all = deployment_args(&manifests);
        assert_eq!(all.len(), 1, "{what}: one Deployment");
        for argv in all {
            let parsed = csr_approver::cli::Cli::try_parse_from(&argv);
            assert!(
                parsed.is_ok(),
                "{what}: {argv:?} rejected: {}",
                parsed.err().map(|e| e.to_string()).unwrap_or_default()
            );
            assert!(
                matches!(parsed.unwrap().command, csr_approver::cli::Command::Run(_)),
                "{what}: runs the controller"
            );
        }
    }
    assert!(
        csr_approver::cli::Cli::try_parse_from(["csr-approver", "run", "--no-such-flag"]).is_err()
    );
}
