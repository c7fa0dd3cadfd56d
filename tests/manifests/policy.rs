//! The shipped policies: the one `deploy/` and the chart's defaults ship is the controller's
//! built-in default (`Policy::default()`), written out field by field; the README's copy is
//! that default too (its inventory entries are examples); and every shipped profile parses
//! as `csr-approver policy validate` parses it.

use std::collections::BTreeSet;

use csr_approver::policy::{CLUSTER_API_MACHINE_GROUP, OPENSHIFT_MACHINE_GROUP, Policy};
use serde_json::Value;

use crate::{documents, helm_template, kustomize, of_kind, repo};

/// The `policy.yaml` of the one policy ConfigMap in `manifests`.
fn shipped_policy(what: &str, manifests: &str) -> String {
    let docs = documents(manifests);
    let maps: Vec<_> = of_kind(&docs, "ConfigMap")
        .into_iter()
        .filter(|m| m["data"].get("policy.yaml").is_some())
        .collect();
    assert_eq!(maps.len(), 1, "{what}: one policy ConfigMap");
    maps[0]["data"]["policy.yaml"].as_str().unwrap().to_owned()
}

/// The policy as the controller applies it: serialized, with the Machine namespaces it
/// trusts per API group (`namespaces_of`: `machine.openshift.io` has a built-in default,
/// which the shipped policy writes out).
fn effective(policy: &Policy) -> Value {
    let mut value = serde_json::to_value(policy).unwrap();
    let trusted: serde_json::Map<String, Value> =
        [OPENSHIFT_MACHINE_GROUP, CLUSTER_API_MACHINE_GROUP]
            .into_iter()
            .map(|group| (group, policy.machines.namespaces_of(group)))
            .filter(|(_, namespaces)| !namespaces.is_empty())
            .map(|(group, namespaces)| (group.to_owned(), serde_json::json!(namespaces)))
            .collect();
    value["machines"]["namespaces"] = Value::Object(trusted);
    value
}

fn parsed(what: &str, text: &str) -> Value {
    let policy =
        Policy::from_yaml(text).unwrap_or_else(|e| panic!("{what}: the policy is invalid: {e:?}"));
    effective(&policy)
}

fn built_in() -> Value {
    effective(&Policy::default())
}

/// Every key path of the mappings in `value` (`client.recovery.window`, ...).
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(map) = value.as_object() {
        for (key, child) in map {
            let path = format!("{prefix}{key}");
            key_paths(child, &format!("{path}."), out);
            out.insert(path);
        }
    }
}

fn paths(value: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    key_paths(value, "", &mut out);
    out
}

#[test]
fn the_shipped_default_policy_is_the_built_in_default() {
    for (what, manifests) in [
        ("deploy/", kustomize("deploy")),
        ("chart (default values)", helm_template(&[])),
    ] {
        let text = shipped_policy(what, &manifests);
        assert_eq!(
            parsed(what, &text),
            built_in(),
            "{what}: the policy equals Policy::default()"
        );
        // Written out, not left to the defaults: every field of the built-in policy is there.
        let written: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            paths(&written),
            paths(&built_in()),
            "{what}: every field written out"
        );
    }
}

#[test]
fn the_default_policy_check_can_fail() {
    let changed = helm_template(&["--set", "policy.client.joinWindow=3h"]);
    assert_ne!(
        parsed("joinWindow=3h", &shipped_policy("joinWindow=3h", &changed)),
        built_in()
    );
    let mut missing: Value =
        serde_saphyr::from_str(&shipped_policy("chart", &helm_template(&[]))).unwrap();
    missing["client"]
        .as_object_mut()
        .unwrap()
        .remove("joinWindow");
    assert_ne!(paths(&missing), paths(&built_in()));
}

/// The README's policy block: the first ```yaml block of its section "The policy".
fn readme_policy() -> String {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let section = readme
        .split_once("\n## The policy\n")
        .expect("README has \"The policy\"")
        .1;
    let block = section
        .split_once("```yaml\n")
        .expect("a yaml block in \"The policy\"")
        .1;
    block.split_once("```").unwrap().0.to_owned()
}

#[test]
fn the_readme_shows_the_built_in_default_policy() {
    let mut readme = parsed("README.md", &readme_policy());
    let examples = readme["inventory"].take();
    assert!(
        examples.as_array().is_some_and(|e| !e.is_empty()),
        "the README's inventory shows example entries (the default is empty)"
    );
    let mut default = built_in();
    assert_eq!(default["inventory"].take(), serde_json::json!([]));
    assert_eq!(
        readme, default,
        "README.md, \"The policy\": all but the example inventory is the default"
    );
}

#[test]
fn every_shipped_policy_is_valid() {
    let chart = |values: &str| helm_template(&["-f", &repo(values)]);
    let renders = [
        ("deploy/", kustomize("deploy")),
        ("chart (default values)", helm_template(&[])),
        (
            "chart (ci/non-default-values.yaml)",
            chart("charts/csr-approver/ci/non-default-values.yaml"),
        ),
        ("overlays/sno/", kustomize("overlays/sno")),
        (
            "chart (values-sno.yaml)",
            chart("charts/csr-approver/values-sno.yaml"),
        ),
    ];
    for (what, manifests) in renders {
        parsed(what, &shipped_policy(what, &manifests));
    }
    // And the check refuses an invalid one.
    let invalid = helm_template(&["--set", "policy.serving.allowedIPRanges[0]=10.0.0.0/33"]);
    assert!(Policy::from_yaml(&shipped_policy("invalid", &invalid)).is_err());
}
