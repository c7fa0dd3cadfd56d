//! Everything a cluster admin installs. `deploy/` is generated from the Helm chart
//! (`scripts/render-deploy.sh`) and drift-tested (`drift`); what the objects grant and run is
//! asserted on the rendered YAML (`rbac`, `workload`, `chart_values`, `monitoring`), the
//! shipped policy is the built-in default (`policy`), and the docs match the chart and the
//! metrics registry (`docs`). Here: what users install is accepted by a real kube-apiserver:
//! `deploy/` (kustomize), its
//! monitoring objects, the single-node OpenShift profile (`overlays/sno/`, the chart's
//! `values-sno.yaml`), and the rendered Helm chart, each through `kubectl apply
//! --dry-run=server` (admission, schema validation, RBAC escalation checks). The SNO renders
//! run one replica with leader election and no PodDisruptionBudget that blocks a drain, and
//! the chart refuses one that would. The Grafana dashboard's ConfigMaps (`deploy/monitoring/
//! grafana/`, the chart's `grafanaDashboard`) hold the dashboard file as is (its content is
//! checked in `tests/dashboard.rs`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

// The checks of the rendered objects, one concern per file, in tests/manifests/.
#[path = "manifests/chart_values.rs"]
mod chart_values;
#[path = "manifests/docs.rs"]
mod docs;
#[path = "manifests/drift.rs"]
mod drift;
mod harness;
#[path = "manifests/monitoring.rs"]
mod monitoring;
#[path = "manifests/policy.rs"]
mod policy;
#[path = "manifests/rbac.rs"]
mod rbac;
#[path = "manifests/workload.rs"]
mod workload;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The namespace `deploy/` and these renders install into.
const NAMESPACE: &str = "csr-approver";

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
fn server_dry_run(cp: &harness::ControlPlane, manifests: &str) -> String {
    ok(
        dry_run_output(cp, manifests),
        "kubectl apply --dry-run=server",
    )
}

fn dry_run_output(cp: &harness::ControlPlane, manifests: &str) -> Output {
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
fn prepared() -> &'static harness::ControlPlane {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let cp = harness::shared();
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
    ok(helm_template_output(args), "helm template")
}

fn helm_template_output(args: &[&str]) -> Output {
    Command::new(helm())
        .args([
            "template",
            "csr-approver",
            &repo("charts/csr-approver"),
            "--namespace",
            "csr-approver",
        ])
        .args(args)
        .output()
        .unwrap()
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
        ("overlays/sno/", kustomize("overlays/sno")),
        (
            "chart (values-sno.yaml)",
            helm_template(&["-f", &repo("charts/csr-approver/values-sno.yaml")]),
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

/// Every YAML document of `manifests`, as JSON values.
fn documents(manifests: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(manifests).expect("rendered manifests are YAML")
}

fn of_kind<'a>(documents: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one object of `kind` named `name` among `documents`.
fn one<'a>(documents: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    let found: Vec<_> = of_kind(documents, kind)
        .into_iter()
        .filter(|d| d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name}");
    found[0]
}

/// Whether a PodDisruptionBudget `spec` over `replicas` healthy pods allows no eviction at
/// all, rounding as the disruption controller does (a percentage of pods rounds up). Such a
/// PDB blocks every drain of a node running one of them: on one node, the Machine Config
/// Operator's drain, so every OpenShift update.
fn pdb_allows_no_eviction(spec: &serde_json::Value, replicas: u64) -> bool {
    // An int-or-string bound as a number of pods: "50%" of 3 is 2.
    let pods = |bound: &serde_json::Value| -> u64 {
        match bound {
            serde_json::Value::String(s) => {
                let percent: u64 = s
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("PDB bound {s:?} is neither a number nor N%"));
                (replicas * percent).div_ceil(100)
            }
            other => other
                .as_u64()
                .unwrap_or_else(|| panic!("PDB bound {other} is not a count")),
        }
    };
    match (spec.get("minAvailable"), spec.get("maxUnavailable")) {
        (Some(min), None) => pods(min) >= replicas,
        (None, Some(max)) => pods(max) == 0,
        _ => panic!("a PDB takes exactly one of minAvailable and maxUnavailable: {spec}"),
    }
}

#[test]
fn the_blocking_pdb_check_can_fail() {
    // deploy/'s PDB allows one eviction of its 2 replicas; over 1 replica it allows none.
    let base = documents(&kustomize("deploy"));
    let pdbs = of_kind(&base, "PodDisruptionBudget");
    assert_eq!(pdbs.len(), 1, "deploy/ ships one PDB");
    assert!(!pdb_allows_no_eviction(&pdbs[0]["spec"], 2));
    assert!(pdb_allows_no_eviction(&pdbs[0]["spec"], 1));
    let spec = |s: &str| -> serde_json::Value { serde_json::from_str(s).unwrap() };
    assert!(pdb_allows_no_eviction(&spec(r#"{"maxUnavailable": 0}"#), 3));
    assert!(pdb_allows_no_eviction(
        &spec(r#"{"maxUnavailable": "0%"}"#),
        3
    ));
    assert!(pdb_allows_no_eviction(
        &spec(r#"{"minAvailable": "51%"}"#),
        2
    ));
    assert!(!pdb_allows_no_eviction(
        &spec(r#"{"minAvailable": "50%"}"#),
        2
    ));
    assert!(!pdb_allows_no_eviction(
        &spec(r#"{"maxUnavailable": 1}"#),
        1
    ));
    assert!(!pdb_allows_no_eviction(
        &spec(r#"{"maxUnavailable": "10%"}"#),
        1
    ));
}

/// The SNO profile as kustomize and Helm render it.
fn sno_renders() -> [(&'static str, String); 2] {
    [
        ("overlays/sno/", kustomize("overlays/sno")),
        (
            "chart with values-sno.yaml",
            helm_template(&["-f", &repo("charts/csr-approver/values-sno.yaml")]),
        ),
    ]
}

#[test]
fn sno_overlay_is_accepted_by_the_apiserver() {
    let cp = prepared();
    let applied = server_dry_run(cp, &kustomize("overlays/sno"));
    for object in [
        "deployment.apps/csr-approver",
        "configmap/csr-approver-policy",
        "role.rbac.authorization.k8s.io/csr-approver",
    ] {
        assert!(
            applied.contains(object),
            "{object} missing from:\n{applied}"
        );
    }
    assert!(!applied.contains("poddisruptionbudget"), "{applied}");
}

#[test]
fn helm_chart_with_sno_values_is_accepted_by_the_apiserver() {
    let cp = prepared();
    let rendered = helm_template(&[
        "-f",
        &repo("charts/csr-approver/values-sno.yaml"),
        "--api-versions",
        "monitoring.coreos.com/v1",
    ]);
    let applied = server_dry_run(cp, &rendered);
    assert!(
        applied.contains("deployment.apps/csr-approver"),
        "{applied}"
    );
    assert!(!applied.contains("poddisruptionbudget"), "{applied}");
}

#[test]
fn sno_renders_run_one_replica_with_leader_election_and_no_blocking_pdb() {
    let mut args = Vec::new();
    for (what, manifests) in sno_renders() {
        let docs = documents(&manifests);
        let deployments = of_kind(&docs, "Deployment");
        assert_eq!(deployments.len(), 1, "{what}: one Deployment");
        let replicas = deployments[0]["spec"]["replicas"].as_u64();
        assert_eq!(replicas, Some(1), "{what}: one replica");
        let container = &deployments[0]["spec"]["template"]["spec"]["containers"][0];
        let container_args: Vec<&str> = container["args"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: container args"))
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(
            container_args.contains(&"--leader-election=true"),
            "{what}: leader election stays on (a rollout's new pod must wait for the Lease): {container_args:?}"
        );
        for pdb in of_kind(&docs, "PodDisruptionBudget") {
            assert!(
                !pdb_allows_no_eviction(&pdb["spec"], 1),
                "{what}: a PDB that blocks the node's drain: {pdb}"
            );
        }
        // SECURITY.md's SNO policy: only the inventory vouches, at most 2 new nodes an hour.
        let policy_maps = of_kind(&docs, "ConfigMap");
        assert_eq!(policy_maps.len(), 1, "{what}: one ConfigMap, the policy");
        let policy: serde_json::Value = serde_saphyr::from_str(
            policy_maps[0]["data"]["policy.yaml"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: policy.yaml")),
        )
        .unwrap_or_else(|e| panic!("{what}: policy.yaml is YAML: {e}"));
        assert_eq!(
            policy["machines"]["apiGroups"],
            serde_json::json!([]),
            "{what}"
        );
        assert_eq!(
            policy["client"]["maxNewNodesPerHour"],
            serde_json::json!(2),
            "{what}"
        );
        assert_eq!(policy["inventory"], serde_json::json!([]), "{what}");
        args.push(container["args"].clone());
    }
    assert_eq!(
        args[0], args[1],
        "kustomize and Helm run the same container"
    );
}

#[test]
fn chart_refuses_a_single_replica_with_a_pdb_that_blocks_the_drain() {
    let sno = repo("charts/csr-approver/values-sno.yaml");
    let refused: [(&[&str], &str); 3] = [
        (
            &[
                "--set",
                "replicas=1",
                "--set",
                "podDisruptionBudget.minAvailable=1",
            ],
            "replicas=1 with podDisruptionBudget.minAvailable=1 allows no eviction",
        ),
        (
            &[
                "--set",
                "replicas=1",
                "--set",
                "podDisruptionBudget.maxUnavailable=0",
            ],
            "replicas=1 with podDisruptionBudget.maxUnavailable=0 allows no eviction",
        ),
        (
            &[
                "-f",
                &sno,
                "--set",
                "podDisruptionBudget.enabled=true",
                "--set",
                "podDisruptionBudget.minAvailable=100%",
            ],
            "replicas=1 with podDisruptionBudget.minAvailable=100% allows no eviction",
        ),
    ];
    for (args, message) in refused {
        let out = helm_template_output(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} rendered");
        assert!(
            stderr.contains(message) && stderr.contains("Set podDisruptionBudget.enabled=false"),
            "{args:?}: the refusal says what is wrong and what to set: {stderr}"
        );
    }
    // What the message offers instead renders, with a PDB that lets the node drain.
    let docs = documents(&helm_template(&[
        "--set",
        "replicas=1",
        "--set",
        "podDisruptionBudget.maxUnavailable=1",
    ]));
    let pdbs = of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdbs.len(), 1);
    assert!(!pdb_allows_no_eviction(&pdbs[0]["spec"], 1));
    // `--set replicas=1` alone still drops the PDB, as docs/install.md says.
    let docs = documents(&helm_template(&["--set", "replicas=1"]));
    assert!(of_kind(&docs, "PodDisruptionBudget").is_empty());
}

/// The one ConfigMap named `name` among `documents`.
fn config_map<'a>(documents: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    one(documents, "ConfigMap", name)
}

#[test]
fn grafana_dashboard_config_maps_are_accepted_by_the_apiserver() {
    let cp = prepared();
    let dashboard =
        std::fs::read_to_string(repo("charts/csr-approver/files/grafana-dashboard.json"))
            .expect("the dashboard");
    let renders = [
        (
            "deploy/monitoring/grafana/",
            kustomize("deploy/monitoring/grafana"),
        ),
        (
            "chart with grafanaDashboard.enabled",
            helm_template(&[
                "--set",
                "grafanaDashboard.enabled=true",
                "--set",
                "grafanaDashboard.annotations.grafana_folder=Kubernetes",
            ]),
        ),
    ];
    for (what, manifests) in renders {
        let docs = documents(&manifests);
        let map = config_map(&docs, "csr-approver-grafana-dashboard");
        // What Grafana's sidecar selects and loads: its label, one *.json key, the JSON file.
        assert_eq!(
            map["metadata"]["labels"]["grafana_dashboard"], "1",
            "{what}: the sidecar's label"
        );
        assert_eq!(
            map["data"]["csr-approver.json"].as_str(),
            Some(dashboard.as_str()),
            "{what}: the ConfigMap holds the dashboard file as is"
        );
        let applied = server_dry_run(cp, &manifests);
        assert!(
            applied.contains("configmap/csr-approver-grafana-dashboard"),
            "{what}: {applied}"
        );
    }
    // Off by default, as the sidecar may not exist.
    let docs = documents(&helm_template(&[]));
    assert!(
        of_kind(&docs, "ConfigMap")
            .iter()
            .all(|d| d["metadata"]["name"] != "csr-approver-grafana-dashboard"),
        "the chart renders the dashboard only when grafanaDashboard.enabled"
    );
    // Into Grafana's namespace when the sidecar only searches its own.
    let docs = documents(&helm_template(&[
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "grafanaDashboard.namespace=grafana",
    ]));
    assert_eq!(
        config_map(&docs, "csr-approver-grafana-dashboard")["metadata"]["namespace"],
        "grafana"
    );
}
