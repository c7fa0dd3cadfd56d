//! The Grafana dashboard (`charts/csr-approver/files/grafana-dashboard.json`, rendered into
//! `deploy/monitoring/grafana/` by the chart): it is a dashboard Grafana can load (title, uid,
//! schemaVersion, a datasource variable, panels with unique ids, a place on the grid and
//! queries), every query parses as PromQL (promtool), and every metric a query names is one
//! the controller exports — taken from the library (`Metrics::exported_families`), not from
//! a list kept by hand. Every `csr_approver_*` family has a panel. (Its ConfigMaps, which
//! hold the file as is, go through the apiserver in `tests/manifests.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use prometheus::proto::MetricType;
use serde_json::Value;

const CHART_COPY: &str = "charts/csr-approver/files/grafana-dashboard.json";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo(CHART_COPY)).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Series names `/metrics` can show: a counter or gauge by its name, a histogram as
/// `_bucket`, `_sum` and `_count` (a summary as its name, `_sum` and `_count`).
fn exported_series() -> BTreeSet<String> {
    let families =
        csr_approver::metrics::Metrics::exported_families().expect("the metrics register");
    let mut series = BTreeSet::new();
    for (name, kind) in families {
        let suffixes: &[&str] = match kind {
            MetricType::HISTOGRAM => &["_bucket", "_sum", "_count"],
            MetricType::SUMMARY => &["", "_sum", "_count"],
            _ => &[""],
        };
        series.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    series
}

// --- PromQL: which metrics does an expression select? ------------------------------------

/// Aggregation operators: followed by `(` or by `by`/`without`, never metric names here.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "offset", "bool", "atan2", "inf", "nan",
];

/// The index just past the bracket that closes the one at `open`, skipping string literals
/// (a `}` or `)` inside `"…"` closes nothing).
fn closing(chars: &[char], open: usize) -> Result<usize, String> {
    let (opener, closer) = match chars[open] {
        '(' => ('(', ')'),
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        other => return Err(format!("{other} opens nothing")),
    };
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = past_string(chars, i)?,
            c if c == opener => {
                depth += 1;
                i += 1;
            }
            c if c == closer => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => i += 1,
        }
    }
    Err(format!("unclosed {opener}"))
}

/// The index just past the string literal starting at `start` (backslash escapes in `"…"`
/// and `'…'`; none in raw `` `…` ``).
fn past_string(chars: &[char], start: usize) -> Result<usize, String> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unterminated string from byte {start}"))
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn next_non_space(chars: &[char], from: usize) -> Option<(usize, char)> {
    chars[from..]
        .iter()
        .enumerate()
        .find(|(_, c)| !c.is_whitespace())
        .map(|(offset, c)| (from + offset, *c))
}

/// The metric names a `{…}` matcher list pins with `__name__="…"`. A `__name__` matched any
/// other way (`=~`, `!=`) could select anything: that is an error, not a pass.
fn name_matchers(body: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find("__name__") {
        let after = rest[at + "__name__".len()..].trim_start();
        let Some(value) = after.strip_prefix('=').filter(|v| !v.starts_with('~')) else {
            return Err(format!("{{{body}}} matches __name__ by other than `=`"));
        };
        let value = value.trim_start();
        let quote = value
            .chars()
            .next()
            .filter(|q| matches!(q, '"' | '\'' | '`'))
            .ok_or_else(|| format!("{{{body}}}: __name__ without a quoted value"))?;
        let end = value[1..]
            .find(quote)
            .ok_or_else(|| format!("{{{body}}}: unterminated __name__ value"))?;
        names.push(value[1..=end].to_string());
        rest = &value[end + 2..];
    }
    Ok(names)
}

/// The metric names `expr` selects. Label names (in `{…}`, after `by`/`without`/`on`/…),
/// function and aggregation names, keywords, numbers, durations, strings and Grafana
/// variables are not metric names. A selector this cannot name — `{job="x"}` without a
/// metric name, `__name__=~"…"` — is an error: what it selects cannot be checked.
fn selected_metrics(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    // A metric name was just read: a `{` now holds its matchers.
    let mut after_name = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let was_after_name = std::mem::replace(&mut after_name, false);
        match c {
            '"' | '\'' | '`' => i = past_string(&chars, i)?,
            '#' => {
                // A comment runs to the end of the line.
                i = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(chars.len(), |p| i + p);
            }
            '{' => {
                let end = closing(&chars, i)?;
                let body: String = chars[i + 1..end - 1].iter().collect();
                let pinned = name_matchers(&body)?;
                if !was_after_name && pinned.is_empty() {
                    return Err(format!("{{{body}}} selects series without naming a metric"));
                }
                names.extend(pinned);
                i = end;
            }
            // Range and subquery durations: `[5m]`, `[1h:1m]`, `[$__rate_interval]`.
            '[' => i = closing(&chars, i)?,
            // Grafana variables: `$namespace`, `${job}`, `$__range`.
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = closing(&chars, i)?;
                } else {
                    while i < chars.len() && is_ident(chars[i]) {
                        i += 1;
                    }
                }
            }
            // Numbers and durations: 0.95, 1e3, 0x1f, 5m, 1h30m.
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let ident: String = chars[start..i].iter().collect();
                let lower = ident.to_ascii_lowercase();
                let next = next_non_space(&chars, i);
                if GROUPING.contains(&lower.as_str()) {
                    // The label list, if any (`group_left` may come without one).
                    if let Some((open, '(')) = next {
                        i = closing(&chars, open)?;
                    }
                } else if KEYWORDS.contains(&lower.as_str())
                    || AGGREGATIONS.contains(&lower.as_str())
                    || matches!(next, Some((_, '(')))
                {
                    // An operator or a function call.
                } else {
                    names.insert(ident);
                    after_name = true;
                }
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

/// The PromQL inside a Grafana Prometheus variable query: `label_values(<selector>, <label>)`
/// → the selector, `label_values(<label>)` → none, `query_result(<expr>)` → the expression.
/// Other functions (`metrics(…)`, `label_names()`) select by pattern: an error.
fn variable_promql(query: &str) -> Result<Option<String>, String> {
    let query = query.trim();
    let inner = |prefix: &str| {
        query
            .strip_prefix(prefix)
            .and_then(|rest| rest.trim_start().strip_prefix('('))
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(args) = inner("label_values") {
        // The label is after the last comma outside braces and strings.
        let chars: Vec<char> = args.chars().collect();
        let mut last_comma = None;
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '{' | '(' | '[' => i = closing(&chars, i)?,
                '"' | '\'' | '`' => i = past_string(&chars, i)?,
                ',' => {
                    last_comma = Some(i);
                    i += 1;
                }
                _ => i += 1,
            }
        }
        return Ok(last_comma.map(|at| chars[..at].iter().collect()));
    }
    if let Some(expr) = inner("query_result") {
        return Ok(Some(expr.to_string()));
    }
    Err(format!(
        "variable query {query:?}: only label_values and query_result can be checked"
    ))
}

/// Every panel, including those nested in collapsed rows.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    panels
}

/// Every PromQL expression of the dashboard, with where it is: the panels' targets and the
/// query variables.
fn expressions(dashboard: &Value) -> Result<Vec<(String, String)>, String> {
    let mut found = Vec::new();
    for panel in all_panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            let place = format!("panel {:?} target {}", panel["title"], target["refId"]);
            found.push((place, expr.to_string()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        // Grafana stores a Prometheus variable query as a string or as {query: …}.
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap_or_default();
        if let Some(expr) = variable_promql(query)? {
            found.push((format!("variable {}", variable["name"]), expr));
        }
    }
    Ok(found)
}

/// What is wrong with the metric names of `dashboard`'s queries: one line per expression
/// that names a series not in `exported`, or that cannot be checked. Empty: all is well.
fn metric_problems(dashboard: &Value, exported: &BTreeSet<String>) -> Vec<String> {
    let found = match expressions(dashboard) {
        Ok(found) => found,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for (place, expr) in found {
        match selected_metrics(&expr) {
            Ok(names) if names.is_empty() => {
                problems.push(format!("{place}: {expr:?} names no metric"));
            }
            Ok(names) => {
                for name in names.difference(exported) {
                    problems.push(format!(
                        "{place}: {name} is not exported by the controller: {expr}"
                    ));
                }
            }
            Err(e) => problems.push(format!("{place}: {e}: {expr}")),
        }
    }
    problems
}

// --- tests --------------------------------------------------------------------------------

#[test]
fn the_dashboard_has_what_grafana_needs() {
    let d = dashboard();
    for field in ["title", "uid"] {
        assert!(
            d[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} is a non-empty string"
        );
    }
    assert!(
        d["uid"].as_str().is_some_and(|u| u.len() <= 40),
        "Grafana uids are at most 40 characters"
    );
    // Datasource references as objects ({type, uid}) need schemaVersion 36 or later.
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {}",
        d["schemaVersion"]
    );
    assert!(
        d.get("id").is_none_or(Value::is_null),
        "a provisioned dashboard has no id (Grafana assigns one)"
    );

    let variables = d["templating"]["list"].as_array().expect("templating.list");
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource template variable");
    assert_eq!(datasource["query"], "prometheus");
    let datasource_ref = format!("${{{}}}", datasource["name"].as_str().expect("its name"));
    let defined: BTreeSet<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();

    let panels = all_panels(&d);
    assert!(panels.len() > 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut placed: Vec<(&Value, [u64; 4])> = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: integer id"));
        assert!(ids.insert(id), "panel id {id} ({title}) is not unique");
        let kind = panel["type"].as_str().unwrap_or_default();
        assert!(!kind.is_empty(), "{title}: type");
        let grid = ["x", "y", "w", "h"].map(|k| {
            panel["gridPos"][k]
                .as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        });
        let [x, _, w, h] = grid;
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {grid:?}");
        for (other, [ox, oy, ow, oh]) in &placed {
            let [x, y, w, h] = grid;
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "{title} overlaps {}", other["title"]);
        }
        placed.push((panel, grid));
        if kind == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], datasource_ref,
            "{title}: queries the datasource variable"
        );
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: targets"));
        assert!(!targets.is_empty(), "{title}: at least one target");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title}: a target without expr");
            assert!(
                ref_ids.insert(target["refId"].as_str().expect("refId")),
                "{title}: refIds are unique"
            );
            assert_eq!(target["datasource"]["uid"], datasource_ref, "{title}");
            // Every variable a query uses is defined (or one of Grafana's own, $__…).
            for (at, _) in expr.match_indices('$') {
                let name: String = expr[at + 1..]
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|&c| c.is_ascii_alphanumeric() || c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || defined.contains(name.as_str()),
                    "{title}: ${name} is not a variable of the dashboard"
                );
            }
        }
    }
}

#[test]
fn every_query_names_only_metrics_the_controller_exports() {
    let exported = exported_series();
    assert!(
        exported.contains("csr_approver_decisions_total")
            && exported.contains("csr_approver_approval_latency_seconds_bucket"),
        "the exported series include the labelled families: {exported:?}"
    );
    let problems = metric_problems(&dashboard(), &exported);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_csr_approver_metric_has_a_panel() {
    let d = dashboard();
    let used: BTreeSet<String> = expressions(&d)
        .expect("checkable queries")
        .iter()
        .flat_map(|(_, expr)| selected_metrics(expr).unwrap_or_default())
        .collect();
    let families =
        csr_approver::metrics::Metrics::exported_families().expect("the metrics register");
    let missing: Vec<&String> = families
        .iter()
        .filter(|(name, _)| name.starts_with("csr_approver_"))
        .filter(|(name, kind)| {
            let series: Vec<String> = match kind {
                MetricType::HISTOGRAM => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{name}{s}"))
                    .collect(),
                _ => vec![name.clone()],
            };
            !series.iter().any(|s| used.contains(s))
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        missing.is_empty(),
        "no panel shows {missing:?}: add one to {CHART_COPY} and run bash scripts/render-deploy.sh"
    );
}

#[test]
fn the_metric_check_rejects_what_the_controller_does_not_export() {
    let exported = exported_series();
    let names = |expr: &str| selected_metrics(expr).expect("checkable");
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    // Label names, functions, keywords, durations, strings and variables are not metrics.
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (le, signer) (rate(csr_approver_approval_latency_seconds_bucket{namespace=~"$namespace", reason="a}b"}[$__rate_interval])))"#
        ),
        set(&["csr_approver_approval_latency_seconds_bucket"])
    );
    assert_eq!(
        names(
            "sum(a_total) without (pod) / on (job) group_left (x) max(b) offset 5m > bool 1e3 unless c"
        ),
        set(&["a_total", "b", "c"])
    );
    assert_eq!(
        names(r#"{__name__="csr_approver_leader", pod="p"}"#),
        set(&["csr_approver_leader"])
    );

    // An unknown metric, a histogram's bare name, a misplaced suffix: all refused.
    for expr in [
        "rate(csr_approver_bogus_total[5m])",
        "csr_approver_approval_latency_seconds",
        "csr_approver_leader_bucket",
        "up",
    ] {
        let unknown: Vec<String> = names(expr).difference(&exported).cloned().collect();
        assert!(!unknown.is_empty(), "{expr} passed");
    }
    // Selectors whose metric cannot be named are errors, not passes.
    for expr in [
        r#"{job="csr-approver"}"#,
        r#"{__name__=~"csr_approver_.*"}"#,
        r#"count({__name__!="x"})"#,
    ] {
        assert!(selected_metrics(expr).is_err(), "{expr} passed");
    }

    // The whole check, on the shipped dashboard with one query broken, in a panel and in a
    // variable.
    let mut d = dashboard();
    d["panels"][1]["targets"][0]["expr"] = "max(csr_approver_leeder)".into();
    let problems = metric_problems(&d, &exported);
    assert!(
        problems.len() == 1 && problems[0].contains("csr_approver_leeder"),
        "{problems:?}"
    );
    let mut d = dashboard();
    let variable = d["templating"]["list"]
        .as_array_mut()
        .expect("variables")
        .iter_mut()
        .find(|v| v["type"] == "query")
        .expect("a query variable");
    variable["query"]["query"] = "label_values(kube_pod_info, namespace)".into();
    let problems = metric_problems(&d, &exported);
    assert!(
        problems.len() == 1 && problems[0].contains("kube_pod_info"),
        "{problems:?}"
    );
}

fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    assert!(
        Command::new(&path).arg("--version").output().is_ok(),
        "promtool not found ({}): run scripts/tools.sh, or set PROMTOOL (scripts/test.sh does)",
        path.display()
    );
    path
}

/// `expr` as Prometheus would get it from Grafana: its built-in intervals as durations, the
/// dashboard's own variables as a match-anything regex (they only appear in `=~"…"`).
fn as_sent(expr: &str) -> String {
    let builtins = BTreeMap::from([
        ("$__rate_interval", "5m"),
        ("$__interval", "1m"),
        ("$__range", "6h"),
    ]);
    let mut out = expr.to_string();
    for (variable, value) in builtins {
        out = out.replace(variable, value);
    }
    let variable = regex::Regex::new(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?").expect("a regex");
    variable.replace_all(&out, ".*").into_owned()
}

#[test]
fn every_query_parses_as_promql() {
    let d = dashboard();
    let rules: Vec<Value> = expressions(&d)
        .expect("checkable queries")
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": as_sent(expr)}))
        .collect();
    let file = std::env::temp_dir().join(format!(
        "csr-approver-dashboard-{}.yaml",
        std::process::id()
    ));
    // JSON is YAML: promtool reads it as a rules file.
    let body = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, body.to_string()).expect("write the rules file");
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it would have refused a broken query.
    let broken = serde_json::json!({"groups": [{"name": "dashboard", "rules": [{"record": "dashboard:broken", "expr": "sum by (le (rate(x[5m]))"}]}]});
    let file = std::env::temp_dir().join(format!(
        "csr-approver-dashboard-broken-{}.yaml",
        std::process::id()
    ));
    std::fs::write(&file, broken.to_string()).expect("write the rules file");
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    let _ = std::fs::remove_file(&file);
    assert!(!out.status.success(), "promtool accepted a broken query");
}
