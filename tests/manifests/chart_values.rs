//! The chart honours its values: `ci/non-default-values.yaml` (every knob moved), a single
//! replica without leader election, and a cluster without the Prometheus operator's API.

use serde_json::{Value, json};

use crate::workload::pod_and_container;
use crate::{documents, helm_template, of_kind, one, repo};

fn non_default() -> Vec<Value> {
    documents(&helm_template(&[
        "-f",
        &repo("charts/csr-approver/ci/non-default-values.yaml"),
        "--api-versions",
        "monitoring.coreos.com/v1",
    ]))
}

fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn the_chart_honours_non_default_values() {
    let docs = non_default();
    let deployment = one(&docs, "Deployment", "csr-approver");
    let (pod, c) = pod_and_container(deployment);
    assert_eq!(deployment["spec"]["replicas"], 3);
    let args = args(c);
    for a in [
        "--leader-election=true",
        "--lease-name=csr-approver-leader",
        "--lease-duration=30",
        "--log-format=text",
        "--policy-configmap=kubelet-csr-policy",
        "--http-addr=0.0.0.0:18080",
    ] {
        assert!(args.contains(&a), "arg {a} in {args:?}");
    }
    assert_eq!(
        c["image"],
        "registry.internal.example/platform/csr-approver:0.1.0-rc.1"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    let env: Vec<_> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(
        env,
        ["POD_NAME", "POD_NAMESPACE", "RUST_LOG"],
        "extraEnv after the downward-API env"
    );
    assert!(
        pod.get("priorityClassName").is_none(),
        "no priorityClassName when set to empty"
    );
    assert_eq!(
        pod["nodeSelector"],
        json!({"node-role.kubernetes.io/control-plane": ""})
    );
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "internal-registry"}])
    );
    assert_eq!(
        (&pod["hostNetwork"], &pod["dnsPolicy"]),
        (&json!(true), &json!("ClusterFirstWithHostNet"))
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 18080, "protocol": "TCP"}])
    );
    let meta = &deployment["spec"]["template"]["metadata"];
    assert_eq!(meta["labels"]["cost-center"], "infra", "podLabels");
    assert_eq!(
        meta["labels"]["team"], "platform",
        "commonLabels on the pods"
    );
    assert_eq!(
        meta["annotations"]["example.com/scrape"], "false",
        "podAnnotations"
    );
    let unlabelled: Vec<_> = docs
        .iter()
        .filter(|d| d["metadata"]["labels"]["team"] != "platform")
        .map(|d| d["kind"].clone())
        .collect();
    assert!(
        unlabelled.is_empty(),
        "commonLabels on every object: {unlabelled:?}"
    );
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "256Mi"}})
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "kubelet-serving-ca", "configMap": {"name": "kubelet-serving-ca"}}])
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "kubelet-serving-ca", "mountPath": "/etc/csr-approver/kubelet-serving-ca", "readOnly": true}])
    );
    assert_eq!(
        one(&docs, "PodDisruptionBudget", "csr-approver")["spec"]["minAvailable"],
        1
    );
    let monitor = one(&docs, "ServiceMonitor", "csr-approver");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(
        one(&docs, "PrometheusRule", "csr-approver")["metadata"]["labels"]["release"],
        "prometheus"
    );
}

#[test]
fn the_chart_renders_non_default_policy_values() {
    let docs = non_default();
    let text = one(&docs, "ConfigMap", "kubelet-csr-policy")["data"]["policy.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        policy["client"]["bootstrappers"],
        json!([{"group": "system:bootstrappers"}]),
        "lists replaced, not merged"
    );
    let inventory: Vec<_> = policy["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.get("name").or(e.get("namePattern")).unwrap().clone())
        .collect();
    assert_eq!(
        inventory,
        [
            "worker-0.bm.example.com",
            "worker-1.bm.example.com",
            r"^worker-[0-9]+\.bm\.example\.com$"
        ]
    );
    assert_eq!(
        policy["client"]["renewals"], true,
        "maps merged with the defaults"
    );
    assert_eq!(policy["client"]["maxNewNodesPerHour"], 12);
    assert_eq!(policy["serving"]["clusterDomain"], "k8s.bm.example.com");
    assert_eq!(policy["serving"]["allowLoopback"], true);
    assert_eq!(policy["machines"]["apiGroups"], json!(["cluster.x-k8s.io"]));
    assert_eq!(
        policy["machines"]["namespaces"]["cluster.x-k8s.io"],
        json!(["bm-workers"]),
        "Cluster API trusted in its named namespace only"
    );
    assert_eq!(policy["mode"], "dry-run");
    assert_eq!(
        policy["client"]["recovery"],
        json!({"enabled": true, "offlineFor": "1h", "window": "12h"}),
        "merged: all three fields"
    );
    assert_eq!(
        policy["serving"]["addressSources"],
        json!(["Node", "KubeletCertificate"])
    );
    assert_eq!(
        policy["serving"]["kubeletServingCAFile"],
        "/etc/csr-approver/kubelet-serving-ca/ca-bundle.crt"
    );
}

#[test]
fn without_leader_election_there_is_no_lease_and_no_pdb() {
    let docs = documents(&helm_template(&[
        "--set",
        "replicas=1",
        "--set",
        "leaderElection.enabled=false",
    ]));
    let (_, c) = pod_and_container(one(&docs, "Deployment", "csr-approver"));
    let args = args(c);
    assert!(args.contains(&"--leader-election=false"), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--lease-")),
        "no --lease-* flags: {args:?}"
    );
    assert!(
        of_kind(&docs, "PodDisruptionBudget").is_empty(),
        "no PDB for a single replica (it would block drains)"
    );
}

#[test]
fn without_the_monitoring_api_there_is_no_monitoring_object() {
    let docs = documents(&helm_template(&[]));
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(of_kind(&docs, kind).is_empty(), "no {kind} rendered");
    }
}
