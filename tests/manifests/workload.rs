//! The Deployment and Service as shipped (`deploy/`, the chart's defaults, the SNO
//! profile): Pod Security `restricted` without a fixed UID, the downward-API env the
//! controller needs, probes on the named port, a Service that selects the pods, and no
//! Prometheus-operator object in `deploy/` itself.

use serde_json::{Value, json};

use crate::{documents, helm_template, kustomize, of_kind, one, repo};

fn shipped() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        ("deploy/", documents(&kustomize("deploy"))),
        ("chart (default values)", documents(&helm_template(&[]))),
        ("overlays/sno/", documents(&kustomize("overlays/sno"))),
        (
            "chart (values-sno.yaml)",
            documents(&helm_template(&[
                "-f",
                &repo("charts/csr-approver/values-sno.yaml"),
            ])),
        ),
    ]
}

/// The Deployment's pod spec and its csr-approver container.
pub fn pod_and_container(deployment: &Value) -> (&Value, &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    let ours: Vec<_> = containers
        .iter()
        .filter(|c| c["name"] == "csr-approver")
        .collect();
    assert_eq!(ours.len(), 1, "one csr-approver container: {containers:?}");
    (pod, ours[0])
}

fn assert_restricted(what: &str, pod: &Value, container: &Value) {
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}: {sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}: {sc}");
    assert!(
        sc["runAsNonRoot"] == true || pod["securityContext"]["runAsNonRoot"] == true,
        "{what}: runAsNonRoot"
    );
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}: {sc}");
    assert_eq!(
        sc["seccompProfile"]["type"], "RuntimeDefault",
        "{what}: {sc}"
    );
    assert!(
        sc.get("runAsUser").is_none() && pod["securityContext"].get("runAsUser").is_none(),
        "{what}: no fixed runAsUser (OpenShift restricted-v2 assigns the UID)"
    );
}

#[test]
fn the_shipped_pod_runs_restricted_with_what_the_controller_needs() {
    for (what, docs) in shipped() {
        let deployment = one(&docs, "Deployment", "csr-approver");
        let (pod, container) = pod_and_container(deployment);
        assert_restricted(what, pod, container);
        let env = |name: &str| {
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
        };
        assert_eq!(
            env("POD_NAME"),
            Some(json!("metadata.name")),
            "{what}: POD_NAME from the downward API"
        );
        assert_eq!(
            env("POD_NAMESPACE"),
            Some(json!("metadata.namespace")),
            "{what}: POD_NAMESPACE from the downward API"
        );
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{what}: {probe}");
            assert_eq!(
                container[probe]["httpGet"]["port"], "http",
                "{what}: {probe}"
            );
        }
        let service = one(&docs, "Service", "csr-approver");
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (key, value) in service["spec"]["selector"].as_object().unwrap() {
            assert_eq!(
                &pod_labels[key], value,
                "{what}: the Service selects the pods ({key})"
            );
        }
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "http", "{what}");
        for kind in ["ServiceMonitor", "PrometheusRule"] {
            assert!(
                of_kind(&docs, kind).is_empty(),
                "{what}: no {kind} (works without the Prometheus operator)"
            );
        }
    }
}

#[test]
fn the_pod_security_check_can_fail() {
    let docs = documents(&kustomize("deploy"));
    let (pod, container) = pod_and_container(one(&docs, "Deployment", "csr-approver"));
    for (field, value) in [
        ("allowPrivilegeEscalation", json!(true)),
        ("readOnlyRootFilesystem", json!(false)),
        ("runAsUser", json!(1000)),
        ("capabilities", json!({"drop": ["NET_RAW"]})),
    ] {
        let mut container = container.clone();
        container["securityContext"][field] = value;
        let refused = std::panic::catch_unwind(|| assert_restricted(field, pod, &container));
        assert!(refused.is_err(), "{field} passed the restricted check");
    }
}
