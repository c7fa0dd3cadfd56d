//! What the controller's ServiceAccount may do, read from the rendered RBAC objects: only
//! the approval subresource, only the two kubelet signers, Events only in `default`, the
//! Service `default/kubernetes` read-only, its own ConfigMap and Lease by name, and — read
//! only, by name — the Machine and Infrastructure CRDs, the Infrastructure `cluster` and
//! kubeadm's `cluster-info` and `kubeadm-config`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{NAMESPACE, documents, helm_template, kustomize, of_kind, repo};

/// One right: (API group, resource, verb, resource name or `*`).
pub type Atom = (String, String, String, String);

fn strings(value: &Value, absent: &[&str]) -> Vec<String> {
    match value.as_array() {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().unwrap().to_string())
            .collect(),
        _ => absent.iter().map(|s| s.to_string()).collect(),
    }
}

/// RBAC rules expanded into atoms, so that two rule lists granting the same rights compare
/// equal however the rules are grouped.
fn atoms(rules: &Value) -> BTreeSet<Atom> {
    let mut atoms = BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        for group in strings(&rule["apiGroups"], &[""]) {
            for resource in strings(&rule["resources"], &[]) {
                for verb in strings(&rule["verbs"], &[]) {
                    for name in strings(&rule["resourceNames"], &["*"]) {
                        atoms.insert((group.clone(), resource.clone(), verb.clone(), name));
                    }
                }
            }
        }
    }
    atoms
}

/// The rights of the ServiceAccount in `namespace` by scope: `cluster`, `own` (its
/// namespace) or another namespace's name. Only roles bound to that ServiceAccount count;
/// a binding to a role that is not rendered fails.
pub fn view(docs: &[Value], namespace: &str) -> BTreeMap<String, BTreeSet<Atom>> {
    let mut roles = BTreeMap::new();
    for kind in ["ClusterRole", "Role"] {
        for role in of_kind(docs, kind) {
            let meta = &role["metadata"];
            let key = (
                kind,
                meta["namespace"].as_str().map(str::to_owned),
                meta["name"].as_str().unwrap().to_owned(),
            );
            roles.insert(key, atoms(&role["rules"]));
        }
    }
    let mut view: BTreeMap<String, BTreeSet<Atom>> = BTreeMap::new();
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for binding in of_kind(docs, kind) {
            let ours = binding["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["kind"] == "ServiceAccount" && s["namespace"] == namespace);
            if !ours {
                continue;
            }
            let role_ref = &binding["roleRef"];
            let role_kind = role_ref["kind"].as_str().unwrap();
            let binding_ns = binding["metadata"]["namespace"].as_str().map(str::to_owned);
            let role_ns = if role_kind == "ClusterRole" {
                None
            } else {
                binding_ns.clone()
            };
            let key = (
                if role_kind == "ClusterRole" {
                    "ClusterRole"
                } else {
                    "Role"
                },
                role_ns,
                role_ref["name"].as_str().unwrap().to_owned(),
            );
            let granted = roles.get(&key).unwrap_or_else(|| {
                panic!(
                    "{kind} {} refers to a {role_kind} that is not rendered: {key:?}",
                    binding["metadata"]["name"]
                )
            });
            let scope = match (kind, binding_ns.as_deref()) {
                ("ClusterRoleBinding", _) => "cluster".to_owned(),
                (_, Some(ns)) if ns == namespace => "own".to_owned(),
                (_, ns) => ns.unwrap_or_default().to_owned(),
            };
            view.entry(scope)
                .or_default()
                .extend(granted.iter().cloned());
        }
    }
    view
}

fn atom(group: &str, resource: &str, verb: &str, name: &str) -> Atom {
    (group.into(), resource.into(), verb.into(), name.into())
}

fn all(view: &BTreeMap<String, BTreeSet<Atom>>) -> impl Iterator<Item = &Atom> {
    view.values().flatten()
}

/// The container args' value of `--flag=`.
fn arg<'a>(args: &'a [Value], flag: &str) -> &'a str {
    args.iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(flag))
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
}

/// The least-privilege rules every shipped RBAC keeps, whatever the values.
fn assert_least_privilege(what: &str, docs: &[Value]) {
    let view = view(docs, NAMESPACE);
    let cluster = view.get("cluster").cloned().unwrap_or_default();
    let signers: BTreeSet<&str> = cluster
        .iter()
        .filter(|a| a.1 == "signers" && a.2 == "approve")
        .map(|a| a.3.as_str())
        .collect();
    assert_eq!(
        signers,
        BTreeSet::from([
            "kubernetes.io/kube-apiserver-client-kubelet",
            "kubernetes.io/kubelet-serving"
        ]),
        "{what}: approve only on the two kubelet signers"
    );
    let wild: Vec<_> = all(&view)
        .filter(|a| [&a.0, &a.1, &a.2].iter().any(|s| *s == "*"))
        .collect();
    assert!(
        wild.is_empty(),
        "{what}: no wildcard group/resource/verb: {wild:?}"
    );
    let allowed_writes = [
        ("certificatesigningrequests/approval", "update"),
        ("certificatesigningrequests/approval", "patch"),
        ("leases", "create"),
        ("leases", "update"),
        ("leases", "patch"),
        ("events", "create"),
        // Its own record of identities minted, never deleted by it (an admin frees a name).
        ("nodeidentities", "create"),
        ("nodeidentities", "update"),
    ];
    let bad: Vec<_> = all(&view)
        .filter(|a| {
            ["create", "update", "patch", "delete", "deletecollection"].contains(&a.2.as_str())
        })
        .filter(|a| !allowed_writes.contains(&(a.1.as_str(), a.2.as_str())))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: writes only the approval subresource, its Lease, Events and its NodeIdentity records: {bad:?}"
    );
    let identities: BTreeSet<&str> = all(&view)
        .filter(|a| a.1 == "nodeidentities")
        .map(|a| a.0.as_str())
        .collect();
    assert_eq!(
        identities,
        BTreeSet::from(["csr-approver.io"]),
        "{what}: NodeIdentity only in csr-approver's own API group"
    );
    let services: BTreeSet<Atom> = all(&view).filter(|a| a.1 == "services").cloned().collect();
    let kubernetes: BTreeSet<Atom> = ["get", "list", "watch"]
        .iter()
        .map(|v| atom("", "services", v, "kubernetes"))
        .collect();
    assert_eq!(
        services, kubernetes,
        "{what}: Services: only default/kubernetes, read-only (its ClusterIPs are never a node's)"
    );
    assert!(
        services.is_subset(&view["default"]),
        "{what}: the kubernetes Service is read in `default`"
    );
    assert!(
        !cluster.iter().any(|a| a.1 == "events"),
        "{what}: Events are granted by Roles, not cluster-wide"
    );
    assert!(
        view["default"].contains(&atom("", "events", "create", "*")),
        "{what}: Events about CSRs in `default`"
    );
    // Which APIs are installed is followed through their CRDs, read by name only.
    let read = |group: &str, resource: &str, names: &[&str]| -> BTreeSet<Atom> {
        names
            .iter()
            .flat_map(|name| ["get", "list", "watch"].map(|verb| atom(group, resource, verb, name)))
            .collect()
    };
    let crds: BTreeSet<Atom> = all(&view)
        .filter(|a| a.1 == "customresourcedefinitions")
        .cloned()
        .collect();
    let followed = read(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &[
            "machines.machine.openshift.io",
            "machines.cluster.x-k8s.io",
            "infrastructures.config.openshift.io",
        ],
    );
    assert_eq!(
        crds, followed,
        "{what}: CRDs: only the Machine and Infrastructure CRDs, by name, read-only"
    );
    assert!(crds.is_subset(&cluster), "{what}: CRDs are cluster-scoped");
    // The API server's endpoints: OpenShift's Infrastructure `cluster` and kubeadm's two
    // ConfigMaps, by name, read-only.
    let infrastructures: BTreeSet<Atom> = all(&view)
        .filter(|a| a.1 == "infrastructures")
        .cloned()
        .collect();
    assert_eq!(
        infrastructures,
        read("config.openshift.io", "infrastructures", &["cluster"]),
        "{what}: the Infrastructure `cluster` only"
    );
    for (namespace, name) in [
        ("kube-public", "cluster-info"),
        ("kube-system", "kubeadm-config"),
    ] {
        let granted: BTreeSet<Atom> = view
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|a| a.1 == "configmaps")
            .cloned()
            .collect();
        assert_eq!(
            granted,
            read("", "configmaps", &[name]),
            "{what}: in {namespace}, the ConfigMap {name} only, read-only"
        );
    }
}

/// The policy ConfigMap and the Lease the Deployment names are the ones RBAC grants.
fn assert_names_from_args_are_granted(what: &str, docs: &[Value]) {
    let view = view(docs, NAMESPACE);
    let own = &view["own"];
    let deployment = of_kind(docs, "Deployment")[0];
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let config_map = arg(args, "--policy-configmap=");
    for verb in ["get", "list", "watch"] {
        assert!(
            own.contains(&atom("", "configmaps", verb, config_map)),
            "{what}: {verb} the policy ConfigMap {config_map}"
        );
    }
    assert!(
        !own.iter().any(|a| a.1 == "configmaps" && a.3 != config_map),
        "{what}: no other ConfigMap: {own:?}"
    );
    let lease = arg(args, "--lease-name=");
    for verb in ["get", "update", "patch"] {
        assert!(
            own.contains(&atom("coordination.k8s.io", "leases", verb, lease)),
            "{what}: {verb} the Lease {lease}"
        );
    }
    assert!(
        own.contains(&atom("coordination.k8s.io", "leases", "create", "*")),
        "{what}: create the Lease"
    );
}

#[test]
fn shipped_rbac_is_least_privilege() {
    let non_default = repo("charts/csr-approver/ci/non-default-values.yaml");
    let renders = [
        ("deploy/", kustomize("deploy")),
        ("chart (default values)", helm_template(&[])),
        (
            "chart (ci/non-default-values.yaml)",
            helm_template(&["-f", &non_default]),
        ),
        ("overlays/sno/", kustomize("overlays/sno")),
    ];
    for (what, manifests) in renders {
        let docs = documents(&manifests);
        assert_least_privilege(what, &docs);
        assert_names_from_args_are_granted(what, &docs);
    }
}

#[test]
fn rbac_follows_the_custom_config_map_and_lease_names() {
    let docs = documents(&helm_template(&[
        "-f",
        &repo("charts/csr-approver/ci/non-default-values.yaml"),
    ]));
    let own = &view(&docs, NAMESPACE)["own"];
    assert!(
        own.contains(&atom("", "configmaps", "watch", "kubelet-csr-policy")),
        "{own:?}"
    );
    assert!(
        !own.iter()
            .any(|a| a.1 == "configmaps" && a.3 == "csr-approver-policy"),
        "{own:?}"
    );
    assert!(
        own.contains(&atom(
            "coordination.k8s.io",
            "leases",
            "patch",
            "csr-approver-leader"
        )),
        "{own:?}"
    );
}

#[test]
fn without_leader_election_there_are_no_lease_rights() {
    let docs = documents(&helm_template(&[
        "--set",
        "replicas=1",
        "--set",
        "leaderElection.enabled=false",
    ]));
    let own = &view(&docs, NAMESPACE)["own"];
    assert!(!own.iter().any(|a| a.1 == "leases"), "{own:?}");
}

/// A widened ClusterRole: what it grants too much, and the edit of its rules.
type Widening = (&'static str, fn(&mut Value));

#[test]
fn the_rbac_checks_can_fail() {
    let docs = documents(&kustomize("deploy"));
    let widened = |edit: fn(&mut Value)| -> Vec<Value> {
        let mut docs = docs.clone();
        let role = docs
            .iter_mut()
            .find(|d| d["kind"] == "ClusterRole")
            .unwrap();
        edit(&mut role["rules"]);
        docs
    };
    let cases: [Widening; 5] = [
        ("a third signer", |rules| {
            rules[2]["resourceNames"]
                .as_array_mut()
                .unwrap()
                .push("example.com/any".into())
        }),
        ("a wildcard", |rules| {
            rules[3]["verbs"] = serde_json::json!(["*"])
        }),
        ("a write on Nodes", |rules| {
            rules[3]["verbs"] = serde_json::json!(["get", "list", "watch", "patch"])
        }),
        ("every CRD", |rules| {
            let crds = rules
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|r| r["resources"][0] == "customresourcedefinitions")
                .unwrap();
            crds.as_object_mut().unwrap().remove("resourceNames");
        }),
        ("Events cluster-wide", |rules| {
            rules.as_array_mut().unwrap().push(
                serde_json::json!({"apiGroups": [""], "resources": ["events"], "verbs": ["get"]}),
            )
        }),
    ];
    for (what, edit) in cases {
        let docs = widened(edit);
        let refused = std::panic::catch_unwind(|| assert_least_privilege(what, &docs));
        assert!(refused.is_err(), "{what} passed the least-privilege check");
    }
    // A binding to a role that is not rendered is an error, not an empty grant.
    let mut docs = docs.clone();
    docs.retain(|d| d["kind"] != "ClusterRole");
    assert!(std::panic::catch_unwind(|| view(&docs, NAMESPACE)).is_err());
}
