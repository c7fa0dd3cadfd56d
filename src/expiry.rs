//! `check expiry`: when each node's kubelet certificates expire, and how long the cluster
//! may stay shut down before its nodes can no longer return with the client certificate
//! they hold (they then ask again with their bootstrap credential: a recovery).
//!
//! Pure: the objects (Nodes' names, NodeIdentities, CSRs) and the policy in, the answer
//! out. Reading them (live or from files) is the caller's job (`cli::expiry`).

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde::Serialize;

use crate::facts;
use crate::identity::{IssuedCertificate, NodeIdentity, read_issued};
use crate::inventory::CsrState;
use crate::policy::Policy;
use crate::vocabulary::{NODE_USER_PREFIX, Signer};

/// The margin `check expiry` keeps before the earliest client certificate's notAfter: the
/// time a cluster takes to come back up and its kubelets to renew.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(3600);

/// The longest margin accepted: longer than any kubelet certificate lives (a year at most
/// by default), so a larger one is a typo, and it keeps the subtraction in range.
pub const MAX_MARGIN: Duration = Duration::from_secs(366 * 24 * 3600);

/// Where a node's certificate is known from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The node's `NodeIdentity` record (`spec.clientCertificate` / `servingCertificate`).
    NodeIdentity,
    /// The newest issued kubelet CSR for the node still in the cluster.
    CertificateSigningRequest,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::NodeIdentity => "NodeIdentity",
            Source::CertificateSigningRequest => "CertificateSigningRequest",
        }
    }
}

/// A certificate of a node, and where it is known from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub certificate: IssuedCertificate,
    pub source: Source,
}

/// One Node's newest known client and serving certificates (`None`: unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertificates {
    pub node: String,
    pub client: Option<Known>,
    pub serving: Option<Known>,
}

/// For each of `nodes` (the cluster's Nodes), its certificates: from its record first,
/// else from the newest issued CSR still present whose subject names it and whose
/// requester may hold its identity (client: a bootstrapper of `policy` or the node itself;
/// serving: the node itself). Sorted by node name.
pub fn node_certificates(
    nodes: &[String],
    identities: &[NodeIdentity],
    csrs: &[CertificateSigningRequest],
    policy: &Policy,
) -> Vec<NodeCertificates> {
    let issued: Vec<(String, Signer, IssuedCertificate)> = csrs
        .iter()
        .filter_map(|csr| issued_for_node(csr, policy))
        .collect();
    let newest_csr = |node: &str, signer: Signer| {
        issued
            .iter()
            .filter(|(n, s, _)| n == node && *s == signer)
            .map(|(_, _, c)| c)
            .max_by_key(|c| (c.not_after, c.not_before))
            .map(|c| Known {
                certificate: c.clone(),
                source: Source::CertificateSigningRequest,
            })
    };
    let mut names: Vec<&String> = nodes.iter().collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|node| {
            let record = identities.iter().find(|r| r.name() == node);
            let from_record = |pick: fn(&NodeIdentity) -> Option<&IssuedCertificate>| {
                record.and_then(pick).map(|c| Known {
                    certificate: c.clone(),
                    source: Source::NodeIdentity,
                })
            };
            NodeCertificates {
                node: node.clone(),
                client: from_record(|r| r.spec.client_certificate.as_ref())
                    .or_else(|| newest_csr(node, Signer::Client)),
                serving: from_record(|r| r.spec.serving_certificate.as_ref())
                    .or_else(|| newest_csr(node, Signer::Serving)),
            }
        })
        .collect()
}

/// The node, kind and leaf certificate of an issued kubelet CSR whose requester may hold
/// the identity its subject names; `None` for anything else (pending, denied, failed, an
/// unreadable certificate, a subject that names no node, a requester that is neither).
fn issued_for_node(
    csr: &CertificateSigningRequest,
    policy: &Policy,
) -> Option<(String, Signer, IssuedCertificate)> {
    let signer = Signer::of(&csr.spec.signer_name)?;
    let state = facts::csr_state(csr);
    if state != CsrState::Issued {
        return None;
    }
    let node = facts::decided_csr_summary(csr, state).node_name?;
    let username = csr.spec.username.as_deref().unwrap_or_default();
    let groups = csr.spec.groups.as_deref().unwrap_or_default();
    let the_node = username.strip_prefix(NODE_USER_PREFIX) == Some(node.as_str());
    let allowed = match signer {
        Signer::Client => {
            the_node
                || policy
                    .client
                    .bootstrappers
                    .iter()
                    .any(|b| b.matches(username, groups))
        }
        Signer::Serving => the_node,
    };
    if !allowed {
        return None;
    }
    let name = csr.metadata.name.as_deref()?;
    let pem = csr.status.as_ref()?.certificate.as_ref()?;
    let certificate = read_issued(name, &pem.0).ok()?;
    Some((node, signer, certificate))
}

/// The answer: the earliest client certificate, the shutdown window it leaves, and every
/// node's certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub now: Timestamp,
    pub margin: Duration,
    /// `client.recovery.enabled` of the policy in force.
    pub recovery: bool,
    /// The node whose client certificate expires first, and when; `None` when no node's
    /// client certificate is known.
    pub earliest_client: Option<(String, Timestamp)>,
    /// The earliest client notAfter less the margin: the cluster may stay shut down until
    /// then (for the nodes known).
    pub shutdown_until: Option<Timestamp>,
    /// Nodes whose client certificate is not known (no record entry, no issued CSR left).
    pub unknown: Vec<String>,
    pub nodes: Vec<NodeCertificates>,
}

impl Report {
    pub fn new(
        nodes: Vec<NodeCertificates>,
        now: Timestamp,
        margin: Duration,
        recovery: bool,
    ) -> Report {
        // Serving certificates do not set the window: a kubelet whose serving certificate
        // expired still joins and asks for a new one with its client certificate.
        let earliest_client = nodes
            .iter()
            .filter_map(|n| Some((n.client.as_ref()?.certificate.not_after, &n.node)))
            .min()
            .map(|(at, node)| (node.clone(), at));
        let shutdown_until = earliest_client.as_ref().map(|(_, at)| {
            // The margin is bounded (MAX_MARGIN), so this only saturates at the epoch's
            // ends, where the answer is "already past" either way.
            at.checked_sub(margin).unwrap_or(Timestamp::MIN)
        });
        let unknown = nodes
            .iter()
            .filter(|n| n.client.is_none())
            .map(|n| n.node.clone())
            .collect();
        Report {
            now,
            margin,
            recovery,
            earliest_client,
            shutdown_until,
            unknown,
            nodes,
        }
    }

    /// The shutdown window is over already (or the earliest certificate expired).
    pub fn already_past(&self) -> bool {
        self.shutdown_until.is_some_and(|until| until <= self.now)
    }

    /// The line on top: what an admin asks before a shutdown.
    pub fn summary(&self) -> String {
        let margin = humantime::format_duration(self.margin);
        let recovery = if self.recovery {
            "after that, nodes return through recovery (client.recovery is on: csr-approver approves each offline node's bootstrap CSR, once per window)"
        } else {
            "after that, nodes return through recovery (client.recovery is off: an admin approves each node's bootstrap CSR by hand)"
        };
        let unknown = match self.unknown.len() {
            0 => String::new(),
            n => format!(
                "{n} node{} unknown ({}): no record or issued CSR holds {} client certificate, so the window cannot be computed for {}; ",
                if n == 1 { "" } else { "s" },
                self.unknown.join(", "),
                if n == 1 { "its" } else { "their" },
                if n == 1 { "it" } else { "them" },
            ),
        };
        let (Some((node, at)), Some(until)) = (&self.earliest_client, self.shutdown_until) else {
            return format!(
                "{unknown}no kubelet client certificate is known: no shutdown window can be given"
            );
        };
        let which = if self.unknown.is_empty() {
            "the earliest kubelet client certificate"
        } else {
            "of the nodes known, the earliest kubelet client certificate"
        };
        let expires = if *at <= self.now {
            format!("expired at {at} (node {node}): already past")
        } else {
            format!("expires at {at} (node {node})")
        };
        // Whole minutes: seconds are noise for a shutdown plan.
        let left = Duration::from_secs(
            until
                .duration_since(self.now)
                .as_secs()
                .max(0)
                .unsigned_abs()
                / 60
                * 60,
        );
        let left = humantime::format_duration(left);
        let stay = if until <= self.now {
            format!(
                "the cluster cannot be shut down safely: {at} − {margin} = {until} is already past"
            )
        } else if self.unknown.is_empty() {
            format!(
                "this cluster can stay shut down until {until} ({at} − {margin}; {left} from now)"
            )
        } else {
            format!(
                "the known nodes can stay shut down until {until} ({at} − {margin}; {left} from now), the unknown ones perhaps not"
            )
        };
        format!("{unknown}{which} {expires}; {stay}; {recovery}")
    }
}

/// `check expiry -o json`: one object. Field names are a contract (docs/install.md).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    now: Timestamp,
    margin_seconds: u64,
    recovery: bool,
    summary: String,
    earliest_client: Option<JsonEarliest<'a>>,
    shutdown_until: Option<Timestamp>,
    already_past: bool,
    unknown_nodes: &'a [String],
    nodes: Vec<JsonNode<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonEarliest<'a> {
    node: &'a str,
    not_after: Timestamp,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonNode<'a> {
    node: &'a str,
    client: Option<JsonCertificate<'a>>,
    serving: Option<JsonCertificate<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonCertificate<'a> {
    not_before: Timestamp,
    not_after: Timestamp,
    expired: bool,
    serial: &'a str,
    csr: &'a str,
    source: &'static str,
}

fn json_certificate(known: Option<&Known>, now: Timestamp) -> Option<JsonCertificate<'_>> {
    known.map(|k| JsonCertificate {
        not_before: k.certificate.not_before,
        not_after: k.certificate.not_after,
        expired: k.certificate.not_after <= now,
        serial: &k.certificate.serial,
        csr: &k.certificate.csr,
        source: k.source.as_str(),
    })
}

impl Report {
    pub fn to_json(&self) -> String {
        let report = JsonReport {
            now: self.now,
            margin_seconds: self.margin.as_secs(),
            recovery: self.recovery,
            summary: self.summary(),
            earliest_client: self
                .earliest_client
                .as_ref()
                .map(|(node, at)| JsonEarliest {
                    node,
                    not_after: *at,
                }),
            shutdown_until: self.shutdown_until,
            already_past: self.already_past(),
            unknown_nodes: &self.unknown,
            nodes: self
                .nodes
                .iter()
                .map(|n| JsonNode {
                    node: &n.node,
                    client: json_certificate(n.client.as_ref(), self.now),
                    serving: json_certificate(n.serving.as_ref(), self.now),
                })
                .collect(),
        };
        // Serialising strings, numbers and timestamps cannot fail.
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    }

    /// The summary, then one row per node.
    pub fn to_table(&self) -> String {
        let cell = |known: Option<&Known>| -> [String; 2] {
            match known {
                None => ["unknown".to_string(), "-".to_string()],
                Some(k) => {
                    let expired = if k.certificate.not_after <= self.now {
                        " (expired)"
                    } else {
                        ""
                    };
                    let source = match k.source {
                        Source::NodeIdentity => "NodeIdentity".to_string(),
                        Source::CertificateSigningRequest => format!("CSR {}", k.certificate.csr),
                    };
                    [format!("{}{expired}", k.certificate.not_after), source]
                }
            }
        };
        let header = [
            "NODE",
            "CLIENT NOT AFTER",
            "CLIENT FROM",
            "SERVING NOT AFTER",
            "SERVING FROM",
        ]
        .map(str::to_string);
        let rows: Vec<[String; 5]> = std::iter::once(header)
            .chain(self.nodes.iter().map(|n| {
                let [client, client_from] = cell(n.client.as_ref());
                let [serving, serving_from] = cell(n.serving.as_ref());
                [n.node.clone(), client, client_from, serving, serving_from]
            }))
            .collect();
        let mut widths = [0; 5];
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = format!("{}\n\n", self.summary());
        for row in &rows {
            let mut line = String::new();
            for (c, w) in row.iter().zip(widths) {
                let _ = write!(line, "{c:<w$}   ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn known(not_after: &str, source: Source) -> Option<Known> {
        Some(Known {
            certificate: IssuedCertificate {
                csr: format!("csr-{not_after}"),
                serial: "01".to_string(),
                not_before: at("2026-01-01T00:00:00Z"),
                not_after: at(not_after),
            },
            source,
        })
    }

    fn node(name: &str, client: Option<&str>, serving: Option<&str>) -> NodeCertificates {
        NodeCertificates {
            node: name.to_string(),
            client: client.and_then(|c| known(c, Source::NodeIdentity)),
            serving: serving.and_then(|s| known(s, Source::CertificateSigningRequest)),
        }
    }

    const NOW: &str = "2026-12-01T00:00:00Z";

    fn report(nodes: Vec<NodeCertificates>, recovery: bool) -> Report {
        Report::new(nodes, at(NOW), DEFAULT_MARGIN, recovery)
    }

    #[test]
    fn the_earliest_client_certificate_across_nodes_sets_the_window() {
        let r = report(
            vec![
                node("a", Some("2026-12-20T00:00:00Z"), None),
                node("b", Some("2026-12-10T06:00:00Z"), None),
                node("c", Some("2026-12-15T00:00:00Z"), None),
            ],
            false,
        );
        assert_eq!(
            r.earliest_client,
            Some(("b".to_string(), at("2026-12-10T06:00:00Z")))
        );
        assert_eq!(r.shutdown_until, Some(at("2026-12-10T05:00:00Z")));
        assert!(!r.already_past());
        assert_eq!(
            r.summary(),
            "the earliest kubelet client certificate expires at 2026-12-10T06:00:00Z (node b); this cluster can stay shut down until 2026-12-10T05:00:00Z (2026-12-10T06:00:00Z − 1h; 9days 5h from now); after that, nodes return through recovery (client.recovery is off: an admin approves each node's bootstrap CSR by hand)"
        );
    }

    #[test]
    fn serving_certificates_do_not_set_the_window() {
        let r = report(
            vec![
                node(
                    "a",
                    Some("2026-12-20T00:00:00Z"),
                    Some("2026-12-02T00:00:00Z"),
                ),
                node(
                    "b",
                    Some("2026-12-21T00:00:00Z"),
                    Some("2026-11-01T00:00:00Z"),
                ),
            ],
            true,
        );
        assert_eq!(
            r.earliest_client,
            Some(("a".to_string(), at("2026-12-20T00:00:00Z")))
        );
        assert_eq!(r.shutdown_until, Some(at("2026-12-19T23:00:00Z")));
        assert!(r.unknown.is_empty());
    }

    #[test]
    fn the_margin_is_subtracted() {
        let nodes = vec![node("a", Some("2026-12-10T00:00:00Z"), None)];
        let r = Report::new(nodes, at(NOW), Duration::from_secs(36 * 3600), false);
        assert_eq!(r.shutdown_until, Some(at("2026-12-08T12:00:00Z")));
        assert!(
            r.summary()
                .contains("(2026-12-10T00:00:00Z − 1day 12h; 7days 12h from now)"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn a_node_without_a_known_client_certificate_is_reported_and_counted() {
        let r = report(
            vec![
                node("a", Some("2026-12-20T00:00:00Z"), None),
                node("b", None, Some("2026-12-05T00:00:00Z")),
                node("c", None, None),
            ],
            false,
        );
        assert_eq!(r.unknown, ["b", "c"]);
        let summary = r.summary();
        assert!(
            summary.starts_with("2 nodes unknown (b, c): no record or issued CSR holds their client certificate, so the window cannot be computed for them; of the nodes known, the earliest kubelet client certificate expires at 2026-12-20T00:00:00Z (node a); the known nodes can stay shut down until 2026-12-19T23:00:00Z"),
            "{summary}"
        );
        assert!(
            summary.contains("the unknown ones perhaps not"),
            "{summary}"
        );
        let table = r.to_table();
        assert!(table.contains("\nc      unknown"), "{table}");
    }

    #[test]
    fn no_known_client_certificate_gives_no_window() {
        let r = report(vec![node("a", None, None)], false);
        assert_eq!(r.earliest_client, None);
        assert_eq!(r.shutdown_until, None);
        assert!(!r.already_past());
        assert_eq!(
            r.summary(),
            "1 node unknown (a): no record or issued CSR holds its client certificate, so the window cannot be computed for it; no kubelet client certificate is known: no shutdown window can be given"
        );
    }

    #[test]
    fn an_expired_certificate_is_reported_as_expired_and_the_window_as_past() {
        let r = report(
            vec![
                node(
                    "a",
                    Some("2026-11-30T00:00:00Z"),
                    Some("2026-11-29T00:00:00Z"),
                ),
                node("b", Some("2026-12-20T00:00:00Z"), None),
            ],
            true,
        );
        assert!(r.already_past());
        let summary = r.summary();
        assert!(
            summary.starts_with("the earliest kubelet client certificate expired at 2026-11-30T00:00:00Z (node a): already past; the cluster cannot be shut down safely"),
            "{summary}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&r.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["alreadyPast"], true);
        assert_eq!(json["nodes"][0]["client"]["expired"], true);
        assert_eq!(json["nodes"][0]["serving"]["expired"], true);
        assert_eq!(json["nodes"][1]["client"]["expired"], false);
        assert!(r.to_table().contains("2026-11-30T00:00:00Z (expired)"));
    }

    #[test]
    fn a_window_inside_the_margin_is_already_past() {
        // The certificate is still valid, but for less than the margin.
        let r = report(vec![node("a", Some("2026-12-01T00:30:00Z"), None)], false);
        assert!(r.already_past());
        assert!(
            r.summary().contains("expires at 2026-12-01T00:30:00Z (node a); the cluster cannot be shut down safely: 2026-12-01T00:30:00Z − 1h = 2026-11-30T23:30:00Z is already past"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn the_summary_says_whether_recovery_is_on() {
        let nodes = vec![node("a", Some("2026-12-20T00:00:00Z"), None)];
        let on = report(nodes.clone(), true).summary();
        let off = report(nodes, false).summary();
        assert!(on.ends_with("(client.recovery is on: csr-approver approves each offline node's bootstrap CSR, once per window)"), "{on}");
        assert!(
            off.ends_with(
                "(client.recovery is off: an admin approves each node's bootstrap CSR by hand)"
            ),
            "{off}"
        );
    }

    #[test]
    fn the_json_names_every_field() {
        let r = report(
            vec![
                node(
                    "a",
                    Some("2026-12-20T00:00:00Z"),
                    Some("2026-12-25T00:00:00Z"),
                ),
                node("b", None, None),
            ],
            true,
        );
        let json: serde_json::Value =
            serde_json::from_str(&r.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["now"], NOW);
        assert_eq!(json["marginSeconds"], 3600);
        assert_eq!(json["recovery"], true);
        assert_eq!(json["earliestClient"]["node"], "a");
        assert_eq!(json["earliestClient"]["notAfter"], "2026-12-20T00:00:00Z");
        assert_eq!(json["shutdownUntil"], "2026-12-19T23:00:00Z");
        assert_eq!(json["alreadyPast"], false);
        assert_eq!(json["unknownNodes"], serde_json::json!(["b"]));
        assert_eq!(json["summary"], r.summary());
        let a = &json["nodes"][0];
        assert_eq!(a["node"], "a");
        assert_eq!(a["client"]["source"], "NodeIdentity");
        assert_eq!(a["client"]["csr"], "csr-2026-12-20T00:00:00Z");
        assert_eq!(a["client"]["serial"], "01");
        assert_eq!(a["client"]["notBefore"], "2026-01-01T00:00:00Z");
        assert_eq!(a["serving"]["source"], "CertificateSigningRequest");
        assert_eq!(json["nodes"][1]["client"], serde_json::Value::Null);
    }
}
