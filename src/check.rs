//! `csr-approver check`: evaluates CSRs without writing anything and explains each
//! decision, for a human (table) or a script (JSON lines).

use std::fmt::Write as _;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Service};
use serde::Serialize;

use crate::decision::{CsrFacts, Decision, ReasonClass, Verdict, decide};
use crate::facts;
use crate::inventory::{Inventory, MachineInfo};
use crate::objects::UnreadableCsr;
use crate::policy::Policy;
use crate::vocabulary::Signer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// One evaluated CSR.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub facts: CsrFacts,
    pub decision: Decision,
    /// Live only, for a pending CSR: the controller's latest failure to write its verdict
    /// (its `ApprovalFailed` Event). The verdict stays what `decide` says; this says why it
    /// is not written yet.
    pub last_write_error: Option<WriteError>,
}

/// A failed verdict write, as the controller's Warning Event reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteError {
    /// When it last happened (the Event's last occurrence).
    pub at: Option<Timestamp>,
    /// The Event's note: the status code, the apiserver's message and a hint.
    pub message: String,
}

/// The JSON-lines contract: one object per CSR. `class` was added after `verdict`, which
/// keeps its meaning: scripts that read `verdict` are unaffected.
#[derive(Serialize)]
struct JsonLine<'a> {
    name: &'a str,
    verdict: &'a str,
    /// What kind of answer the reason gives ([`ReasonClass::as_str`]); `Error` for an unreadable CSR.
    class: &'a str,
    reason: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_write_error: Option<&'a WriteError>,
}

/// The reason of the row or line of a CSR that could not be read.
pub const UNREADABLE_REASON: &str = "InvalidObject";

/// The table's VERDICT column. A CSR left pending says why it waits, so that an admin
/// does not wait for one that will never be approved: `WAIT` may still be approved when
/// the cluster changes; `REFUSED` is forged or invalid whatever the cluster holds (left
/// pending; denied with `deny: true`); `ADMIN` is unproven, for an admin to approve by
/// hand after checking the host (never denied).
pub fn verdict_label(decision: &Decision) -> &'static str {
    match (&decision.verdict, decision.reason.class()) {
        (Verdict::Approve, _) => "APPROVE",
        (Verdict::Deny, _) => "DENY",
        (Verdict::Ignore, _) => "IGNORE",
        (Verdict::Wait, ReasonClass::Definitive) => "REFUSED",
        (Verdict::Wait, ReasonClass::ForAnAdmin) => "ADMIN",
        (Verdict::Wait, _) => "WAIT",
    }
}

/// Builds the inventory from cluster objects; `csrs` are every CSR the cluster holds,
/// including the ones being evaluated.
pub fn build_inventory<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    machines: impl IntoIterator<Item = MachineInfo>,
    csrs: impl IntoIterator<Item = &'a CsrFacts>,
    kubernetes_service: Option<&Service>,
) -> Inventory {
    let mut inventory = Inventory::new(
        nodes.into_iter().filter_map(facts::node_info),
        machines,
        csrs.into_iter().map(facts::csr_summary),
    );
    if let Some(service) = kubernetes_service {
        inventory.set_kubernetes_service_ips(facts::service_cluster_ips(service));
    }
    inventory
}

pub fn evaluate<'a>(
    targets: impl IntoIterator<Item = &'a CsrFacts>,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Vec<Evaluation> {
    targets
        .into_iter()
        .map(|facts| Evaluation {
            facts: facts.clone(),
            decision: decide(facts, inventory, policy, now),
            last_write_error: None,
        })
        .collect()
}

/// Whether the table colours its VERDICT column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal, `NO_COLOR` is unset or empty and `TERM` is not `dumb`.
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// `auto` resolved for this process: colours are for a person at a terminal; a pipe, a
    /// file or a script reading the table gets none.
    pub fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
            }
        }
    }
}

/// Plain text, as for a pipe: see [`render_colored`].
pub fn render(evaluations: &[Evaluation], format: OutputFormat) -> String {
    render_colored(evaluations, format, false)
}

/// `color` colours the table's verdicts (green approve, red deny and refused, magenta
/// admin, yellow wait); JSON lines never carry colour.
pub fn render_colored(evaluations: &[Evaluation], format: OutputFormat, color: bool) -> String {
    render_with_unreadable(evaluations, &[], format, color)
}

/// [`render_colored`], then one `ERROR` row (JSON: `"verdict":"error"`) per CSR that could
/// not be read, naming its field.
pub fn render_with_unreadable(
    evaluations: &[Evaluation],
    unreadable: &[UnreadableCsr],
    format: OutputFormat,
    color: bool,
) -> String {
    match format {
        OutputFormat::Json => {
            let evaluated = evaluations.iter().map(|e| JsonLine {
                name: &e.facts.name,
                verdict: e.decision.verdict.as_str(),
                class: e.decision.reason.class().as_str(),
                reason: e.decision.reason.as_str(),
                message: &e.decision.message,
                last_write_error: e.last_write_error.as_ref(),
            });
            let failed = unreadable.iter().map(|u| JsonLine {
                name: &u.name,
                verdict: "error",
                class: "Error",
                reason: UNREADABLE_REASON,
                message: &u.message,
                last_write_error: None,
            });
            evaluated
                .chain(failed)
                // Serialising a struct of strings cannot fail.
                .map(|line| serde_json::to_string(&line).unwrap_or_default() + "\n")
                .collect()
        }
        OutputFormat::Table => render_table(evaluations, unreadable, color),
    }
}

fn short_signer(signer: &str) -> &str {
    match Signer::of(signer) {
        Some(kubelet) => kubelet.short_name(),
        None => signer,
    }
}

/// SGR colour of a verdict cell; `None` leaves it plain.
fn verdict_color(verdict: &str) -> Option<&'static str> {
    match verdict {
        "APPROVE" => Some("32"),
        "DENY" | "REFUSED" | "ERROR" => Some("31"),
        "ADMIN" => Some("35"),
        "WAIT" => Some("33"),
        _ => None,
    }
}

fn render_table(evaluations: &[Evaluation], unreadable: &[UnreadableCsr], color: bool) -> String {
    let header = [
        "NAME",
        "REQUESTER",
        "SIGNER",
        "VERDICT",
        "REASON",
        "MESSAGE",
    ];
    let rows: Vec<[String; 6]> = evaluations
        .iter()
        .map(|e| {
            [
                e.facts.name.clone(),
                e.facts.username.clone(),
                short_signer(&e.facts.signer_name).to_string(),
                verdict_label(&e.decision).to_string(),
                e.decision.reason.as_str().to_string(),
                e.decision.message.clone(),
            ]
        })
        .chain(unreadable.iter().map(|u| {
            [
                u.name.clone(),
                u.requester.clone(),
                short_signer(&u.signer).to_string(),
                "ERROR".to_string(),
                UNREADABLE_REASON.to_string(),
                u.message.clone(),
            ]
        }))
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    const VERDICT: usize = 3;
    let line = |cells: &[&str], colored: bool| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
                continue;
            }
            // Pad outside the escape codes: widths count what is seen.
            let padding = widths[i].saturating_sub(cell.chars().count()) + 3;
            match verdict_color(cell).filter(|_| colored && i == VERDICT) {
                Some(sgr) => {
                    let _ = write!(text, "\u{1b}[{sgr}m{cell}\u{1b}[0m");
                }
                None => text.push_str(cell),
            }
            text.push_str(&" ".repeat(padding));
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(&header, false);
    for (row, evaluation) in rows.iter().zip(evaluations) {
        out.push_str(&line(&row.each_ref().map(String::as_str), color));
        // Under its row, so an APPROVE that is not happening says why.
        if let Some(error) = &evaluation.last_write_error {
            let at = error
                .at
                .map(|t| format!(" ({})", t.strftime("%Y-%m-%dT%H:%M:%SZ")))
                .unwrap_or_default();
            let _ = writeln!(out, "  last write error{at}: {}", error.message);
        }
    }
    // The unreadable CSRs' rows follow the evaluated ones (`rows` holds both).
    for row in &rows[evaluations.len()..] {
        out.push_str(&line(&row.each_ref().map(String::as_str), color));
    }
    out
}
