//! The summary `check --hygiene` prints: per cause, how many, the oldest, a few names and
//! the nodes with the most. A table for a person; JSON lines (one object per cause, every
//! cause even at 0) for a script.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;

use super::{StaleCause, classify};
use crate::check::OutputFormat;
use crate::inventory::CsrSummary;
use crate::policy::Policy;

/// How many CSR names and nodes a cause lists: enough to start with `kubectl describe`.
pub const EXAMPLES: usize = 3;

/// Every cause, in [`StaleCause::ALL`]'s order, with its stale CSRs summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HygieneReport {
    pub causes: Vec<CauseSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CauseSummary {
    pub cause: &'static str,
    pub count: usize,
    /// Creation time of the oldest (by `creationTimestamp`; CSRs without one are not aged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_created: Option<Timestamp>,
    /// Its age at the report's `now`, in whole seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_seconds: Option<u64>,
    /// The oldest few, oldest first.
    pub examples: Vec<String>,
    /// The nodes (from the request's CN) with the most, most first.
    pub nodes: Vec<NodeCount>,
    pub meaning: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeCount {
    pub node: String,
    pub count: usize,
}

impl HygieneReport {
    /// Classifies `csrs` (every CSR the cluster holds; other signers are skipped).
    pub fn new<'a>(
        csrs: impl IntoIterator<Item = &'a CsrSummary>,
        policy: Option<&Policy>,
        now: Timestamp,
    ) -> HygieneReport {
        let mut stale: BTreeMap<StaleCause, Vec<&CsrSummary>> = BTreeMap::new();
        for csr in csrs {
            if let Some(cause) = classify(csr, policy, now) {
                stale.entry(cause).or_default().push(csr);
            }
        }
        let causes = StaleCause::ALL
            .iter()
            .map(|cause| summarise(*cause, stale.remove(cause).unwrap_or_default(), now))
            .collect();
        HygieneReport { causes }
    }

    /// How many CSRs are stale, whatever the cause.
    pub fn total(&self) -> usize {
        self.causes.iter().map(|c| c.count).sum()
    }
}

fn summarise(cause: StaleCause, mut csrs: Vec<&CsrSummary>, now: Timestamp) -> CauseSummary {
    // Oldest first; undated ones last; ties by name, so that reports are deterministic.
    csrs.sort_by(|a, b| {
        (a.created.is_none(), a.created, &a.name).cmp(&(b.created.is_none(), b.created, &b.name))
    });
    let oldest_created = csrs.first().and_then(|c| c.created);
    let mut by_node: BTreeMap<&str, usize> = BTreeMap::new();
    for csr in &csrs {
        if let Some(node) = &csr.node_name {
            *by_node.entry(node.as_str()).or_default() += 1;
        }
    }
    let mut nodes: Vec<NodeCount> = by_node
        .into_iter()
        .map(|(node, count)| NodeCount {
            node: node.to_string(),
            count,
        })
        .collect();
    // Stable: equal counts stay in name order.
    nodes.sort_by_key(|n| std::cmp::Reverse(n.count));
    nodes.truncate(EXAMPLES);
    CauseSummary {
        cause: cause.as_str(),
        count: csrs.len(),
        oldest_created,
        oldest_age_seconds: oldest_created
            .map(|t| u64::try_from(now.duration_since(t).as_secs()).unwrap_or(0)),
        examples: csrs
            .iter()
            .take(EXAMPLES)
            .map(|c| c.name.to_string())
            .collect(),
        nodes,
        meaning: cause.meaning(),
    }
}

/// `2d3h`, `1h5m`, `12m`, `40s`: at most the two largest units, for a table cell.
fn short_age(seconds: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let Some(first) = UNITS.iter().position(|(size, _)| seconds >= *size) else {
        return "0s".to_string();
    };
    let (size, unit) = UNITS[first];
    let rest = seconds % size;
    match UNITS.get(first + 1) {
        Some((small, small_unit)) if rest >= *small => {
            format!("{}{unit}{}{small_unit}", seconds / size, rest / small)
        }
        _ => format!("{}{unit}", seconds / size),
    }
}

/// The report as a table (with a legend of the causes) or as JSON lines.
pub fn render(report: &HygieneReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => report
            .causes
            .iter()
            // Serialising strings, numbers and timestamps cannot fail.
            .map(|c| serde_json::to_string(c).unwrap_or_default() + "\n")
            .collect(),
        OutputFormat::Table => render_table(report),
    }
}

fn render_table(report: &HygieneReport) -> String {
    let header = ["CAUSE", "COUNT", "OLDEST", "NODES", "EXAMPLES"].map(str::to_string);
    let rows: Vec<[String; 5]> = std::iter::once(header)
        .chain(report.causes.iter().map(|c| {
            [
                c.cause.to_string(),
                c.count.to_string(),
                c.oldest_age_seconds.map_or("-".to_string(), short_age),
                list_or_dash(c.nodes.iter().map(|n| format!("{} ({})", n.node, n.count))),
                list_or_dash(c.examples.iter().cloned()),
            ]
        }))
        .collect();
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<width$}   ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = writeln!(out);
    for cause in StaleCause::ALL {
        let _ = writeln!(out, "{}: {}", cause.as_str(), cause.meaning());
    }
    out
}

fn list_or_dash(items: impl Iterator<Item = String>) -> String {
    let list: Vec<String> = items.collect();
    if list.is_empty() {
        "-".to_string()
    } else {
        list.join(", ")
    }
}
