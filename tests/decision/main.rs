//! The decision tables: one file per file of the policy (`src/decision/`), one table per
//! rule family, one row per case. A row is a name, a CSR (real requests signed by real
//! keys, see `tests/common`), a world (cluster objects, evidence, policy), and the verdict
//! and reason expected — plus, where it matters, words the message must hold. Every
//! refusal names its reason: a row that refuses for another reason fails.
//!
//! A new rule is a new row. `check` runs a whole table and reports every row that fails,
//! by name, rather than the first.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "../builders/mod.rs"]
mod builders;
mod scenes;

mod client;
mod common;
mod flood;
mod recovery;
mod reserved;
mod serving;
mod verdict;

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use builders::{Csr, World, now};
use csr_approver::decision::{Decision, Reason, ReasonClass, Verdict, decide, reads_verdicts_of};
use csr_approver::evidence::Wanted;
use csr_approver::inventory::{CsrState, EndpointSource};
use csr_approver::vocabulary::{AddressValue, CLIENT_SIGNER, SERVING_SIGNER, Signer};

/// The verdict a row expects. `Wait` matches whatever retry delay the policy gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Approve,
    Wait,
    Deny,
    Ignore,
}

impl Expect {
    fn matches(self, verdict: &Verdict) -> bool {
        matches!(
            (self, verdict),
            (Expect::Approve, Verdict::Approve)
                | (Expect::Wait, Verdict::Wait)
                | (Expect::Deny, Verdict::Deny)
                | (Expect::Ignore, Verdict::Ignore)
        )
    }
}

/// One row of a decision table.
#[derive(Debug, Clone)]
pub struct Case {
    name: String,
    world: World,
    csr: Csr,
    expect: Option<(Expect, Reason)>,
    says: Vec<String>,
    starts: Option<String>,
    never_says: Vec<String>,
    node: Option<String>,
    class: Option<ReasonClass>,
    /// `None`: not checked; `Some(None)`: the decision asks for no evidence.
    wants: Option<Option<Wanted>>,
    /// ClusterIPs of the `kubernetes` Service, which the watch path records apart.
    service_ips: Vec<IpAddr>,
    /// The API server's endpoints as the cluster records them.
    endpoints: Vec<(EndpointSource, AddressValue)>,
}

impl Case {
    /// A row without an expectation yet: the runner fails it until one is given.
    pub fn new(name: impl Into<String>, world: World, csr: Csr) -> Case {
        Case {
            name: name.into(),
            world,
            csr,
            expect: None,
            says: Vec::new(),
            starts: None,
            never_says: Vec::new(),
            node: None,
            class: None,
            wants: None,
            service_ips: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    pub fn approves(self, reason: Reason) -> Case {
        self.expects(Expect::Approve, reason)
    }

    pub fn waits(self, reason: Reason) -> Case {
        self.expects(Expect::Wait, reason)
    }

    pub fn denies(self, reason: Reason) -> Case {
        self.expects(Expect::Deny, reason)
    }

    pub fn ignores(self, reason: Reason) -> Case {
        self.expects(Expect::Ignore, reason)
    }

    fn expects(mut self, verdict: Expect, reason: Reason) -> Case {
        self.expect = Some((verdict, reason));
        self
    }

    /// Words the message must contain.
    pub fn says(mut self, words: &str) -> Case {
        self.says.push(words.to_string());
        self
    }

    /// How the message must begin.
    pub fn starts_with(mut self, words: &str) -> Case {
        self.starts = Some(words.to_string());
        self
    }

    /// Words the message must not contain.
    pub fn never_says(mut self, words: &str) -> Case {
        self.never_says.push(words.to_string());
        self
    }

    /// The node the decision names.
    pub fn for_node(mut self, node: &str) -> Case {
        self.node = Some(node.to_string());
        self
    }

    /// The class of the reason: what kind of answer it is.
    pub fn class(mut self, class: ReasonClass) -> Case {
        self.class = Some(class);
        self
    }

    /// The evidence the decision asks the controller to read.
    pub fn wants(mut self, wanted: Wanted) -> Case {
        self.wants = Some(Some(wanted));
        self
    }

    pub fn wants_nothing(mut self) -> Case {
        self.wants = Some(None);
        self
    }

    /// Checks that the decision asks for no evidence, unless the row already expects some.
    pub fn or_wants_nothing(mut self) -> Case {
        self.wants.get_or_insert(None);
        self
    }

    /// `value` recorded by `source` as an API server endpoint.
    pub fn api_server_endpoint(mut self, source: EndpointSource, value: &str) -> Case {
        self.endpoints.push((source, AddressValue::parse(value)));
        self
    }

    pub fn kubernetes_service_ip(mut self, ip: &str) -> Case {
        self.service_ips.push(ip.parse().expect("test IP"));
        self
    }

    /// The same row under `deny: true`, expecting the same answer: for refusals that are
    /// never denied, whatever the switch says.
    pub fn under_deny(&self) -> Case {
        let mut case = self.clone();
        case.name = format!("{} (deny: true)", self.name);
        case.world.policy.deny = true;
        case
    }

    /// The row with the verdicts of every signer its decision must not read
    /// (`decision::reads_verdicts_of`) added: CSRs in every state, old and new, asked by a
    /// bootstrapper or a node, for every node the row names. Writing such a verdict runs
    /// beside other writes (`controller::reconcile`), so it must change no decision.
    fn with_verdicts_it_must_not_read(&self, decided: &Decision) -> Case {
        let read = Signer::of(&self.csr.0.signer_name).map_or(&[][..], reads_verdicts_of);
        let unread_signers = [CLIENT_SIGNER, SERVING_SIGNER, "example.com/other"]
            .into_iter()
            .filter(|s| Signer::of(s).is_none_or(|signer| !read.contains(&signer)));
        let mut nodes: BTreeSet<String> = ["worker-1", "worker-2"].map(String::from).into();
        nodes.extend(self.world.nodes.iter().map(|n| n.name.to_string()));
        nodes.extend(self.world.machines.iter().flat_map(|m| m.node_names()));
        nodes.extend(decided.node.clone());
        let states = [
            CsrState::Pending,
            CsrState::Approved,
            CsrState::Issued,
            CsrState::Denied,
            CsrState::Failed,
        ];
        let mut case = self.clone();
        let mut n = 0;
        for signer in unread_signers {
            for node in &nodes {
                for state in states {
                    for created in [now(), builders::ago(60), builders::ago(7200)] {
                        for by_the_node in [false, true] {
                            n += 1;
                            let mut other = builders::summary(
                                &format!("unread-{n}"),
                                signer,
                                node,
                                state,
                                created,
                            );
                            if by_the_node {
                                other.requester = format!("system:node:{node}");
                                other.groups = vec!["system:nodes".into()];
                            }
                            if matches!(state, CsrState::Approved | CsrState::Issued) {
                                other.approved_at = Some(created);
                            }
                            case.world.csrs.push(other);
                        }
                    }
                }
            }
        }
        case
    }

    fn decide(&self) -> Decision {
        let mut inventory = self.world.inventory();
        if !self.service_ips.is_empty() {
            inventory.set_kubernetes_service_ips(self.service_ips.iter().copied());
        }
        for source in [
            EndpointSource::ClusterInfo,
            EndpointSource::KubeadmConfig,
            EndpointSource::Infrastructure,
        ] {
            let values = self
                .endpoints
                .iter()
                .filter(|(s, _)| *s == source)
                .map(|(_, v)| v.clone())
                .collect();
            inventory.set_api_server_endpoints(source, values);
        }
        decide(&self.csr.0, &inventory, &self.world.policy, now())
    }

    /// What is wrong with the decision for this row; empty when it is right.
    fn problems(&self, d: &Decision) -> Vec<String> {
        let mut problems = Vec::new();
        match self.expect {
            None => problems.push("the row expects no verdict".to_string()),
            Some((verdict, reason)) => {
                if !verdict.matches(&d.verdict) || d.reason != reason {
                    problems.push(format!("expected {verdict:?} / {reason:?}"));
                }
            }
        }
        for words in &self.says {
            if !d.message.contains(words.as_str()) {
                problems.push(format!("the message lacks {words:?}"));
            }
        }
        if let Some(start) = &self.starts
            && !d.message.starts_with(start.as_str())
        {
            problems.push(format!("the message does not begin {start:?}"));
        }
        for words in &self.never_says {
            if d.message.contains(words.as_str()) {
                problems.push(format!("the message holds {words:?}"));
            }
        }
        if let Some(node) = &self.node
            && d.node.as_deref() != Some(node.as_str())
        {
            problems.push(format!("expected node {node}, got {:?}", d.node));
        }
        if let Some(class) = self.class
            && d.reason.class() != class
        {
            problems.push(format!(
                "expected class {class:?}, got {:?}",
                d.reason.class()
            ));
        }
        if let Some(wants) = &self.wants
            && &d.wants != wants
        {
            problems.push(format!("expected wants {wants:?}, got {:?}", d.wants));
        }
        problems
    }
}

/// A failed row: its name, what is wrong, and the decision it got.
struct Failure {
    name: String,
    problems: Vec<String>,
    got: Option<Decision>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.problems.join("; "))?;
        if let Some(d) = &self.got {
            write!(f, "; got {:?} / {:?}: {}", d.verdict, d.reason, d.message)?;
        }
        Ok(())
    }
}

/// Runs every row of a table; fails with all failed rows by name. Names are unique in a
/// table, so that a failure points at one row.
pub fn check(table: impl IntoIterator<Item = Case>) {
    let mut names = BTreeSet::new();
    let mut failures = Vec::new();
    let mut rows = 0;
    for case in table {
        rows += 1;
        if !names.insert(case.name.clone()) {
            failures.push(Failure {
                name: case.name.clone(),
                problems: vec!["another row has this name".to_string()],
                got: None,
            });
        }
        let d = case.decide();
        let mut problems = case.problems(&d);
        let unread = case.with_verdicts_it_must_not_read(&d);
        let d_unread = unread.decide();
        if d_unread != d {
            problems.push(format!(
                "its decision changed when verdicts of signers it must not read were added \
                 (decision::reads_verdicts_of): {:?} / {:?}: {}",
                d_unread.verdict, d_unread.reason, d_unread.message
            ));
        }
        if !problems.is_empty() {
            failures.push(Failure {
                name: case.name,
                problems,
                got: Some(d),
            });
        }
    }
    // Shown with --nocapture: how many rows each table holds.
    println!("{rows} rows");
    assert!(rows > 0, "an empty table proves nothing");
    let report: Vec<String> = failures.iter().map(Failure::to_string).collect();
    assert!(
        failures.is_empty(),
        "{} of {rows} rows failed:\n{}",
        failures.len(),
        report.join("\n")
    );
}

/// Serving verdicts are written side by side (`controller::reconcile`) because no decision
/// reads them; client verdicts are written one at a time because client decisions do.
#[test]
fn only_client_verdicts_are_read_by_other_decisions() {
    assert!(csr_approver::decision::verdicts_are_read(Signer::Client));
    assert!(!csr_approver::decision::verdicts_are_read(Signer::Serving));
}
