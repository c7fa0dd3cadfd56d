//! The security policy: `decide` turns the facts about one CSR, what the cluster knows, and
//! the policy into a verdict with a reason and a message that names the field and value
//! that decided it. Pure: no I/O; the clock is an argument. The rules in prose are in
//! `docs/design.md` §3; this is their only implementation, in this order:
//!
//! 1. Only pending CSRs (`AlreadyDecided`) of the two kubelet signers (`OtherSigner`) that
//!    the policy enables (`SignerDisabled`) are ours; everything else is ignored.
//! 2. The request parses as one canonical PKCS#10 block whose signature verifies
//!    (`request`: `MalformedRequest`, `BadSignature`, `UnsupportedKey`, `WeakKey`).
//! 3. Checks every kubelet CSR passes: key, expiration, subject O, requested extensions
//!    and CN (`common`).
//! 4. Client CSRs: renewal by the node itself, or a new node some evidence vouches for
//!    (`client`), certificate recovery (`recovery`), the flood guard (`flood`).
//! 5. Serving CSRs: every SAN an address the node owns, no claim outranking its, inside the fences
//!    (`serving`); never a reserved name or address (`reserved`).
//!
//! A refusal's class (`reason`) decides what happens to the CSR: `Definitive` is denied
//! with `deny: true`, else left pending; `ForAnAdmin` is never denied and its message says
//! how to approve by hand; `Transient` waits for the cluster to change.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

mod client;
mod common;
mod flood;
mod generation;
mod reason;
mod recovery;
mod reserved;
mod serving;

pub use flood::{
    FLOOD_WINDOW, count_new_nodes_approved, count_pending, max_new_nodes, max_pending,
};
pub use generation::{inventory_generation, machine_generation};
pub use reason::{Reason, ReasonClass};
pub use reserved::why_reserved;

use crate::evidence::Wanted;
use crate::identity::HostGeneration;
use crate::inventory::{CsrState, Inventory};
use crate::policy::Policy;
use crate::request::{ParsedRequest, RequestError};
use crate::vocabulary::{AddressValue, Signer};

/// A Machine may be created slightly after the CSR its host sends (clock skew between the
/// machine controller and the apiserver); no more than this.
pub const MACHINE_CREATION_SKEW: Duration = Duration::from_secs(10);

/// The signers whose CSRs' verdicts a decision for `signer` reads. A client decision reads
/// those of other client CSRs (the duplicate, recovery and flood rules); a serving decision
/// reads none — only Nodes, Machines, evidence and the policy. So writing a serving verdict
/// changes no other decision, and only client verdicts need to be written one at a time
/// (`controller::reconcile`). Every row of the decision tables checks this: its decision
/// must not change when verdicts outside this list are added.
pub fn reads_verdicts_of(signer: Signer) -> &'static [Signer] {
    match signer {
        Signer::Client => &[Signer::Client],
        Signer::Serving => &[],
    }
}

/// Whether some decision reads the verdicts of `signer`'s CSRs: then writing one must wait
/// for the write before it, so that each decision sees the verdicts written before it.
pub fn verdicts_are_read(signer: Signer) -> bool {
    Signer::ALL
        .iter()
        .any(|reader| reads_verdicts_of(*reader).contains(&signer))
}

/// The facts about one CSR object that the decision reads (`facts::csr_facts` reads them
/// from the object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrFacts {
    pub name: String,
    /// `metadata.uid`: a CSR deleted and re-created under its name is another request.
    pub uid: Option<String>,
    pub signer_name: String,
    pub username: String,
    pub groups: Vec<String>,
    pub usages: Vec<String>,
    pub expiration_seconds: Option<i64>,
    pub created: Option<Timestamp>,
    pub state: CsrState,
    /// When the `Approved` condition was written, if it was.
    pub approved_at: Option<Timestamp>,
    /// `spec.request`, parsed and verified once per object seen and shared by every
    /// decision made on it.
    pub request: Arc<Result<ParsedRequest, RequestError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    /// Only with `deny: true` and a definitive reason.
    Deny,
    /// Leave pending; the controller decides when to look again (or the cluster changes).
    Wait,
    /// Not ours to decide.
    Ignore,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
            Verdict::Wait => "wait",
            Verdict::Ignore => "ignore",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    pub message: String,
    /// The node the CSR is for, once known from its CN.
    pub node: Option<String>,
    /// Evidence that could change the answer and that the controller can read on demand
    /// (`evidence`): read it, then decide again.
    pub wants: Option<Wanted>,
    /// For an approval that mints a node identity (a new node or a recovery): the host
    /// generation it is minted for, which the controller records (`NodeIdentity`) before
    /// it writes the approval.
    pub mints_for: Option<HostGeneration>,
    /// For a serving approval under a policy that trusts `KubeletCertificate`: the SANs
    /// an independent source (Node status, trusted Machine, inventory entry) vouched for,
    /// which the controller records in the node's `NodeIdentity` before it writes the
    /// approval — the record that bounds how long the kubelet's own certificate may renew
    /// them. Empty otherwise: the default serving path writes nothing else.
    pub vouches_for: Vec<AddressValue>,
}

/// An approval, before it becomes a `Decision`.
struct Approval {
    reason: Reason,
    message: String,
    mints_for: Option<HostGeneration>,
    vouches_for: Vec<AddressValue>,
}

/// A refusal before the policy's `deny` switch is applied.
struct Refusal {
    reason: Reason,
    message: String,
    wants: Option<Wanted>,
}

fn refuse(reason: Reason, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
        wants: None,
    }
}

impl Refusal {
    /// The same refusal, saying which evidence could change it.
    fn wanting(self, wanted: Wanted) -> Refusal {
        Refusal {
            wants: Some(wanted),
            ..self
        }
    }
}

impl From<&RequestError> for Refusal {
    fn from(e: &RequestError) -> Refusal {
        let reason = match e {
            RequestError::BadSignature(_) => Reason::BadSignature,
            RequestError::UnsupportedKey(_) => Reason::UnsupportedKey,
            RequestError::WeakKey { .. } => Reason::WeakKey,
            _ => Reason::MalformedRequest,
        };
        refuse(reason, e.to_string())
    }
}

/// Decides one CSR.
pub fn decide(csr: &CsrFacts, inventory: &Inventory, policy: &Policy, now: Timestamp) -> Decision {
    if csr.state != CsrState::Pending {
        return ignore(
            Reason::AlreadyDecided,
            format!("CSR is already {}", csr.state.as_str()),
        );
    }
    let Some(signer) = Signer::of(&csr.signer_name) else {
        return ignore(
            Reason::OtherSigner,
            format!("signer {} is not a kubelet signer", csr.signer_name),
        );
    };
    let enabled = match signer {
        Signer::Client => policy.client.enabled,
        Signer::Serving => policy.serving.enabled,
    };
    if !enabled {
        return ignore(
            Reason::SignerDisabled,
            format!("the policy disables {}", csr.signer_name),
        );
    }

    let mut node = None;
    let outcome = csr
        .request
        .as_ref()
        .as_ref()
        .map_err(Refusal::from)
        .and_then(|request| {
            common::check_common(csr, request, policy, signer)?;
            let name = common::node_name_from_subject(request, inventory, policy)?;
            node = Some(name.clone());
            match signer {
                Signer::Client => {
                    client::decide_client(csr, request, &name, inventory, policy, now)
                }
                Signer::Serving => {
                    serving::decide_serving(csr, request, &name, inventory, policy, now)
                }
            }
        });
    match outcome {
        Ok(Approval {
            reason,
            message,
            mints_for,
            vouches_for,
        }) => Decision {
            verdict: Verdict::Approve,
            reason,
            message,
            node,
            wants: None,
            mints_for,
            vouches_for,
        },
        Err(refusal) => refused(csr, refusal, node, policy),
    }
}

fn ignore(reason: Reason, message: String) -> Decision {
    Decision {
        verdict: Verdict::Ignore,
        reason,
        message,
        node: None,
        wants: None,
        mints_for: None,
        vouches_for: Vec::new(),
    }
}

/// The verdict a refusal gets from its class and the policy's `deny` switch.
fn refused(csr: &CsrFacts, refusal: Refusal, node: Option<String>, policy: &Policy) -> Decision {
    let Refusal {
        reason,
        mut message,
        wants,
    } = refusal;
    let class = reason.class();
    if class == ReasonClass::ForAnAdmin {
        message = format!(
            "{message}. Left for an admin, never denied; once you verified the host, approve by hand: kubectl certificate approve {} (oc adm certificate approve {})",
            csr.name, csr.name
        );
    }
    let verdict = match class {
        ReasonClass::NotOurs => Verdict::Ignore,
        ReasonClass::Definitive if policy.deny => Verdict::Deny,
        ReasonClass::Definitive
        | ReasonClass::ForAnAdmin
        | ReasonClass::Transient
        | ReasonClass::Approval => Verdict::Wait,
    };
    Decision {
        verdict,
        reason,
        message,
        node,
        wants,
        mints_for: None,
        vouches_for: Vec::new(),
    }
}
