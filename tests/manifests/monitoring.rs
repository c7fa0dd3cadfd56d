//! `deploy/monitoring/`: the alerts docs/metrics.md describes, a ServiceMonitor on the
//! controller's `/metrics`, all in its namespace, and CRD fixtures (for the apiserver
//! tests) that serve exactly these kinds.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{NAMESPACE, documents, kustomize, one, repo};

#[test]
fn deploy_monitoring_ships_the_alerts_and_the_scrape() {
    let docs = documents(&kustomize("deploy/monitoring"));
    let rule = one(&docs, "PrometheusRule", "csr-approver");
    let alerts: BTreeSet<&str> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(
        alerts,
        BTreeSet::from([
            "CSRApproverPendingCSRTooOld",
            "CSRApproverFloodGuard",
            "CSRApproverNewNodeRateLimited",
            "CSRApproverNodeRecoveryPending",
            "CSRApproverPolicyInvalid",
            "CSRApproverNoLeader",
            "CSRApproverWriteFailures",
            "CSRApproverCertificatesNotIssued",
        ])
    );
    let endpoint = &one(&docs, "ServiceMonitor", "csr-approver")["spec"]["endpoints"][0];
    assert_eq!(
        (&endpoint["port"], &endpoint["path"]),
        (&"http".into(), &"/metrics".into())
    );
    for object in &docs {
        assert_eq!(
            object["metadata"]["namespace"], NAMESPACE,
            "{} in the controller's namespace",
            object["kind"]
        );
    }
}

/// A minimal CRD: apiextensions v1, named `<plural>.<group>`, one storage version, every
/// version's schema an object whose spec keeps unknown fields. Its served kinds and scope.
fn served_by(what: &str, crd: &Value) -> Vec<((String, String, String), String)> {
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1", "{what}");
    assert_eq!(crd["kind"], "CustomResourceDefinition", "{what}");
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap();
    let plural = spec["names"]["plural"].as_str().unwrap();
    assert_eq!(
        crd["metadata"]["name"],
        format!("{plural}.{group}"),
        "{what}"
    );
    let versions = spec["versions"].as_array().unwrap();
    assert_eq!(
        versions.iter().filter(|v| v["storage"] == true).count(),
        1,
        "{what}: one storage version"
    );
    let mut served = Vec::new();
    for version in versions {
        let schema = &version["schema"]["openAPIV3Schema"];
        assert_eq!(schema["type"], "object", "{what}");
        assert_eq!(
            schema["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"], true,
            "{what}"
        );
        if version["served"] == true {
            let kind = spec["names"]["kind"].as_str().unwrap();
            let key = (
                group.to_owned(),
                version["name"].as_str().unwrap().to_owned(),
                kind.to_owned(),
            );
            served.push((key, spec["scope"].as_str().unwrap_or("").to_owned()));
        }
    }
    served
}

#[test]
fn the_crd_fixtures_serve_the_monitoring_kinds() {
    let dir = repo("tests/fixtures/crds/monitoring");
    let mut served = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            continue;
        }
        for crd in documents(&std::fs::read_to_string(&path).unwrap()) {
            served.extend(served_by(&path.display().to_string(), &crd));
        }
    }
    for object in documents(&kustomize("deploy/monitoring")) {
        let (group, version) = object["apiVersion"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap();
        let key = (
            group.to_owned(),
            version.to_owned(),
            object["kind"].as_str().unwrap().to_owned(),
        );
        assert_eq!(
            served.get(&key).map(String::as_str),
            Some("Namespaced"),
            "a fixture serves {key:?}: {served:?}"
        );
    }
}
