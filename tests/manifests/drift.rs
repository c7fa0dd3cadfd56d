//! `deploy/` is generated from the chart (`scripts/render-deploy.sh`): what is committed is
//! what the chart renders, and what `kubectl apply -k deploy/` installs is what the chart
//! installs with its default values, plus the Namespace.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::{documents, helm, helm_template, kustomize, ok, repo};

const REGENERATE: &str = "bash scripts/render-deploy.sh";

/// Every file under `dir`, by its path relative to `dir`.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

fn render_deploy_into(out: &Path) {
    ok(
        Command::new("bash")
            .arg(repo("scripts/render-deploy.sh"))
            .arg(out)
            .env("HELM", helm())
            .output()
            .unwrap(),
        REGENERATE,
    );
}

/// The files of two trees that differ, are missing or are extra.
fn differences(
    committed: &BTreeMap<String, Vec<u8>>,
    rendered: &BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (file, bytes) in rendered {
        match committed.get(file) {
            None => out.push(format!("deploy/{file} is missing")),
            Some(committed) if committed != bytes => out.push(format!("deploy/{file} differs")),
            Some(_) => {}
        }
    }
    for file in committed.keys().filter(|f| !rendered.contains_key(*f)) {
        out.push(format!("deploy/{file} is not rendered by the chart"));
    }
    out
}

#[test]
fn deploy_is_what_the_chart_renders() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("deploy");
    render_deploy_into(&out);
    let rendered = tree(&out);
    let drift = differences(&tree(Path::new(&repo("deploy"))), &rendered);
    assert!(
        drift.is_empty(),
        "deploy/ is generated from charts/csr-approver, and it has drifted:\n  {}\n\
         Change the chart (not deploy/) and regenerate with: {REGENERATE}",
        drift.join("\n  ")
    );
    for (file, bytes) in &rendered {
        assert!(
            String::from_utf8_lossy(bytes).starts_with(
                "# Generated from charts/csr-approver by `bash scripts/render-deploy.sh`"
            ),
            "deploy/{file} says that it is generated and how"
        );
    }
}

#[test]
fn the_drift_check_can_fail() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("deploy");
    render_deploy_into(&out);
    let rendered = tree(&out);
    let mut edited = rendered.clone();
    edited
        .get_mut("rbac.yaml")
        .unwrap()
        .extend_from_slice(b"# a hand edit\n");
    edited.insert("extra.yaml".into(), Vec::new());
    edited.remove("service.yaml");
    assert_eq!(
        differences(&edited, &rendered),
        [
            "deploy/rbac.yaml differs",
            "deploy/service.yaml is missing",
            "deploy/extra.yaml is not rendered by the chart",
        ]
    );
    // And the script never empties a directory it was not made for.
    let occupied = scratch.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("keep.txt"), "mine").unwrap();
    let refused = Command::new("bash")
        .arg(repo("scripts/render-deploy.sh"))
        .arg(&occupied)
        .env("HELM", helm())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert_eq!(
        std::fs::read_to_string(occupied.join("keep.txt")).unwrap(),
        "mine"
    );
}

/// Objects by `kind namespace/name`, so that two renders compare whatever their order.
fn by_identity(manifests: &str) -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    for object in documents(manifests) {
        let meta = &object["metadata"];
        let key = format!(
            "{} {}/{}",
            object["kind"].as_str().unwrap(),
            meta["namespace"].as_str().unwrap_or(""),
            meta["name"].as_str().unwrap()
        );
        assert!(objects.insert(key.clone(), object).is_none(), "{key} twice");
    }
    objects
}

#[test]
fn deploy_installs_what_the_chart_installs_with_default_values_plus_the_namespace() {
    let mut deploy = by_identity(&kustomize("deploy"));
    let namespace = deploy
        .remove("Namespace /csr-approver")
        .expect("deploy/ creates its namespace");
    let labels = &namespace["metadata"]["labels"];
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels[format!("pod-security.kubernetes.io/{mode}")],
            "restricted",
            "the Namespace {mode}s Pod Security 'restricted': {labels}"
        );
    }
    assert_eq!(deploy, by_identity(&helm_template(&[])));

    let monitoring = by_identity(&kustomize("deploy/monitoring"));
    let chart = by_identity(&helm_template(&[
        "--api-versions",
        "monitoring.coreos.com/v1",
    ]));
    for (key, object) in &monitoring {
        assert_eq!(
            Some(object),
            chart.get(key),
            "{key}: deploy/monitoring/ and the chart"
        );
    }
    assert_eq!(
        monitoring.keys().collect::<Vec<_>>(),
        [
            "PrometheusRule csr-approver/csr-approver",
            "ServiceMonitor csr-approver/csr-approver"
        ]
    );
}

#[test]
fn the_alert_rules_have_one_source() {
    // The rules file promtool tests (charts/csr-approver/tests/alerts-test.yaml) is the
    // PrometheusRule's spec, in the chart and in deploy/monitoring/.
    let file: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("charts/csr-approver/files/prometheus-rules.yaml")).unwrap(),
    )
    .unwrap();
    let deploy = by_identity(&kustomize("deploy/monitoring"));
    assert_eq!(
        deploy["PrometheusRule csr-approver/csr-approver"]["spec"],
        file
    );
    let tests: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("charts/csr-approver/tests/alerts-test.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        tests["rule_files"],
        serde_json::json!(["../files/prometheus-rules.yaml"])
    );
}

#[test]
fn deploy_files_of_one_object_read_as_one_document() {
    // tests/image.rs and scripts read deploy/deployment.yaml as a single document; the
    // generated header and helm's `---` before it must keep it one.
    for file in [
        "deployment.yaml",
        "service.yaml",
        "policy-configmap.yaml",
        "namespace.yaml",
    ] {
        let text = std::fs::read_to_string(repo(&format!("deploy/{file}"))).unwrap();
        let object: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("deploy/{file} is one YAML document: {e}"));
        assert!(object["kind"].is_string(), "deploy/{file}: {object}");
    }
}
