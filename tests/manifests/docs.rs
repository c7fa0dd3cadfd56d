//! What the docs say about shipped artefacts is what they are: the chart README's table
//! has a row for every value with its real default, and docs/metrics.md has a section for
//! every alert and a row for every metric the controller exports — names taken from the
//! metrics registry itself (`Metrics::exported_families`), not from its source text.

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::Value;

use crate::repo;

/// Values documented as one row although they are maps.
const DOCUMENTED_WHOLE: [&str; 4] = [
    "resources",
    "podSecurityContext",
    "securityContext",
    "policy.machines.namespaces",
];

fn value_paths(tree: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (key, value) in tree.as_object().unwrap() {
        let path = format!("{prefix}{key}");
        match value.as_object() {
            Some(map) if !map.is_empty() && !DOCUMENTED_WHOLE.contains(&path.as_str()) => {
                value_paths(value, &format!("{path}."), out)
            }
            _ => out.push((path, value.clone())),
        }
    }
}

/// How the README's table writes a scalar default, or None for lists and maps.
fn shown(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.is_empty() => Some("\"\"".into()),
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The chart README's problems with `values`: rows missing, rows for no value, defaults
/// shown wrong.
fn readme_problems(values: &Value, readme: &str) -> Vec<String> {
    let row = Regex::new(r"(?m)^\| `([^`]+)` \| ([^|]*)\|").unwrap();
    let rows: std::collections::BTreeMap<String, String> = row
        .captures_iter(readme)
        .map(|c| (c[1].to_owned(), c[2].trim().to_owned()))
        .collect();
    let mut paths = Vec::new();
    value_paths(values, "", &mut paths);
    let names: BTreeSet<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
    let containers: BTreeSet<&str> = names
        .iter()
        .filter_map(|p| p.rsplit_once('.').map(|(c, _)| c))
        .collect();
    let mut problems = Vec::new();
    for (path, value) in &paths {
        match (rows.get(path), shown(value)) {
            (None, _) => problems.push(format!("value {path} has no row in the README table")),
            (Some(default), Some(shown)) if *default != format!("`{shown}`") => problems.push(
                format!("README default of {path} is {default}, values.yaml has `{shown}`"),
            ),
            _ => {}
        }
    }
    for row in rows
        .keys()
        .filter(|r| !names.contains(r.as_str()) && !containers.contains(r.as_str()))
    {
        problems.push(format!("README row {row} is no value in values.yaml"));
    }
    problems
}

fn chart_values() -> Value {
    serde_saphyr::from_str(
        &std::fs::read_to_string(repo("charts/csr-approver/values.yaml")).unwrap(),
    )
    .unwrap()
}

#[test]
fn the_chart_readme_documents_every_value_with_its_default() {
    let readme = std::fs::read_to_string(repo("charts/csr-approver/README.md")).unwrap();
    let problems = readme_problems(&chart_values(), &readme);
    assert!(
        problems.is_empty(),
        "charts/csr-approver/README.md:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_chart_readme_check_can_fail() {
    let readme = std::fs::read_to_string(repo("charts/csr-approver/README.md")).unwrap();
    let mut values = chart_values();
    values["replicas"] = 3.into();
    values["newKnob"] = true.into();
    let readme = readme.replace("| `hostNetwork` |", "| `hostNetworking` |");
    let mut problems = readme_problems(&values, &readme);
    problems.sort();
    assert_eq!(
        problems,
        [
            "README default of replicas is `2`, values.yaml has `3`",
            "README row hostNetworking is no value in values.yaml",
            "value hostNetwork has no row in the README table",
            "value newKnob has no row in the README table",
        ]
    );
}

/// The metric families the controller exports under its prefix, from the registry.
fn registered() -> BTreeSet<String> {
    csr_approver::metrics::Metrics::exported_families()
        .expect("the metrics register")
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("csr_approver_"))
        .collect()
}

/// docs/metrics.md's problems with the alert rules and the registered metrics.
fn metric_doc_problems(rules: &Value, doc: &str, registered: &BTreeSet<String>) -> Vec<String> {
    let row = Regex::new(r"(?m)^\| `(csr_approver_[a-z_]+)` \|").unwrap();
    let documented: BTreeSet<String> = row.captures_iter(doc).map(|c| c[1].to_owned()).collect();
    let metric = Regex::new(r"csr_approver_[a-z_]+").unwrap();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for rule in rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        if let Some(alert) = rule["alert"].as_str()
            && !doc.lines().any(|l| l == format!("### {alert}"))
        {
            problems.push(format!("alert {alert} has no section"));
        }
        used.extend(
            metric
                .find_iter(rule["expr"].as_str().unwrap())
                .map(|m| m.as_str().to_owned()),
        );
    }
    for m in &used {
        if !documented.contains(m) {
            problems.push(format!(
                "metric {m} used by an alert is not in the metrics table"
            ));
        }
        if !registered.contains(m) {
            problems.push(format!("metric {m} used by an alert is not registered"));
        }
    }
    for m in registered.difference(&documented) {
        problems.push(format!("registered metric {m} is not in the metrics table"));
    }
    for m in documented.difference(registered) {
        problems.push(format!("documented metric {m} is not registered"));
    }
    problems
}

fn rules() -> Value {
    serde_saphyr::from_str(
        &std::fs::read_to_string(repo("charts/csr-approver/files/prometheus-rules.yaml")).unwrap(),
    )
    .unwrap()
}

#[test]
fn docs_metrics_documents_every_alert_and_metric() {
    let registered = registered();
    assert!(
        registered.len() > 10,
        "the registry lists the controller's metrics: {registered:?}"
    );
    let doc = std::fs::read_to_string(repo("docs/metrics.md")).unwrap();
    let problems = metric_doc_problems(&rules(), &doc, &registered);
    assert!(
        problems.is_empty(),
        "docs/metrics.md:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_metric_docs_check_can_fail() {
    let doc = std::fs::read_to_string(repo("docs/metrics.md")).unwrap();
    let doc = doc
        .replace("### CSRApproverNoLeader\n", "### No leader\n")
        .replace("| `csr_approver_leader` |", "| leader |");
    let mut registered = registered();
    registered.insert("csr_approver_new_total".into());
    registered.remove("csr_approver_policy_valid");
    let problems = metric_doc_problems(&rules(), &doc, &registered);
    for expected in [
        "alert CSRApproverNoLeader has no section",
        "metric csr_approver_leader used by an alert is not in the metrics table",
        "metric csr_approver_policy_valid used by an alert is not registered",
        "registered metric csr_approver_new_total is not in the metrics table",
        "documented metric csr_approver_policy_valid is not registered",
    ] {
        assert!(
            problems.iter().any(|p| p == expected),
            "{expected} in {problems:?}"
        );
    }
}
