//! The cache: one `Inventory` shared by the watches (writers) and reconciles (readers),
//! with the verdicts this replica wrote ahead of the watch.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::Timestamp;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use super::recent::RecentDecisions;
use crate::approval;
use crate::decision::CsrFacts;
use crate::facts;
use crate::gather::Reading;
use crate::identity::NodeIdentity;
use crate::inventory::{CsrState, CsrSummary, Inventory};
use crate::request::{ParsedRequest, RequestError};
use crate::vocabulary::is_kubelet_signer;

/// The inventory shared by the watches (writers) and reconciles (readers).
#[derive(Debug, Default)]
pub struct ClusterCache {
    state: RwLock<CacheState>,
}

/// The inventory and the verdicts we wrote, under one lock: a watch event cannot slip
/// between looking up our verdict and overwriting the CSR's state.
#[derive(Debug, Default)]
pub(super) struct CacheState {
    pub(super) inventory: Inventory,
    /// Verdicts we wrote that the CSR watch has not shown yet, by CSR name. An event or a
    /// re-list older than our write still shows the CSR pending; without this the cache
    /// would go back in time and the CSR would be judged again.
    written: HashMap<String, OwnVerdict>,
    /// The request of each pending CSR, parsed and verified, by name: a CSR's spec never
    /// changes, so every later event and reconcile of the same object (its uid) reads this
    /// parse instead of parsing and verifying again.
    requests: HashMap<String, KnownRequest>,
    /// Decisions of ours of the last minutes, for a new leader to explain if unexplained.
    recent: RecentDecisions,
}

/// A pending CSR's request as first read, and the object it was read from.
#[derive(Debug, Clone)]
struct KnownRequest {
    uid: String,
    request: Arc<Result<ParsedRequest, RequestError>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnVerdict {
    /// The CSR we decided: a CSR re-created under the same name is another request.
    uid: Option<String>,
    state: CsrState,
    /// When we wrote it.
    at: Timestamp,
}

impl CacheState {
    /// The request of `csr` as parsed when this object was first seen pending, if it was.
    fn known_request(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Option<Arc<Result<ParsedRequest, RequestError>>> {
        let known = self.requests.get(csr.metadata.name.as_deref()?)?;
        (Some(known.uid.as_str()) == csr.metadata.uid.as_deref()).then(|| known.request.clone())
    }

    /// Whether our verdict still stands over what the watch shows for CSR `name` with
    /// `uid` in `state`; forgets it once it no longer does.
    fn own_verdict(
        &mut self,
        name: &str,
        uid: Option<&str>,
        state: CsrState,
    ) -> Option<OwnVerdict> {
        let own = self.written.get(name)?;
        if own.uid.as_deref() == uid && state == CsrState::Pending {
            return Some(own.clone());
        }
        // Either the watch has caught up with a decision (ours or not) and is authoritative
        // again, or the CSR was deleted and re-created: our verdict was about another one.
        self.written.remove(name);
        None
    }

    /// Stores what the CSR watch says about one CSR, keeping our own verdict over an
    /// older view that still shows it pending.
    pub(super) fn observe_csr(&mut self, seen: SeenCsr) {
        let (summary, own) = self.take_in(seen, Timestamp::now());
        let name = summary.name.clone();
        self.inventory.upsert_csr(summary);
        if let Some(own) = own {
            self.inventory.set_csr_state(&name, own.state, own.at);
        }
    }

    /// Keeps what one CSR event brings besides its summary (a pending CSR's facts, a recent
    /// decision of ours); the summary to store, and our verdict if it still stands over it.
    fn take_in(&mut self, seen: SeenCsr, now: Timestamp) -> (CsrSummary, Option<OwnVerdict>) {
        let SeenCsr {
            uid,
            summary,
            pending,
            ours_at,
        } = seen;
        self.keep_request(&summary.name, uid.as_deref(), pending);
        if let Some(at) = ours_at {
            self.recent.insert(at, &summary.name, uid.as_deref(), now);
        }
        let own = self.own_verdict(&summary.name, uid.as_deref(), summary.state);
        (summary, own)
    }

    /// Keeps a pending CSR's parsed request for its later events and reconciles; a decided
    /// one needs none.
    fn keep_request(&mut self, name: &str, uid: Option<&str>, pending: Option<CsrFacts>) {
        match (pending, uid) {
            (Some(facts), Some(uid)) => {
                let known = KnownRequest {
                    uid: uid.to_string(),
                    request: facts.request,
                };
                self.requests.insert(name.to_string(), known);
            }
            _ => {
                self.requests.remove(name);
            }
        }
    }

    pub(super) fn forget_csr(&mut self, name: &str) {
        self.written.remove(name);
        self.requests.remove(name);
        self.recent.forget(name);
        self.inventory.remove_csr(name);
    }

    /// Replaces every CSR, as after a (re-)list.
    pub(super) fn replace_csrs(&mut self, listed: Vec<SeenCsr>) {
        // A CSR missing from a list taken after our write was deleted meanwhile.
        let names: HashSet<&str> = listed.iter().map(|c| &*c.summary.name).collect();
        self.written.retain(|name, _| names.contains(name.as_str()));
        self.requests.clear();
        self.recent.clear();
        let now = Timestamp::now();
        let mut kept = Vec::new();
        let mut summaries = Vec::with_capacity(listed.len());
        for seen in listed {
            let (summary, own) = self.take_in(seen, now);
            if let Some(own) = own {
                kept.push((summary.name.clone(), own));
            }
            summaries.push(summary);
        }
        self.inventory.replace_csrs(summaries);
        for (name, own) in kept {
            self.inventory.set_csr_state(&name, own.state, own.at);
        }
    }
}

/// A CSR as one watch event showed it: read here, its request parsed only the first time
/// the object is seen pending. A re-list holds thousands of these until it is done, so a
/// decided CSR keeps only its summary.
#[derive(Debug, Clone)]
pub(super) struct SeenCsr {
    uid: Option<String>,
    summary: CsrSummary,
    /// The facts of a pending CSR, for its reconcile.
    pending: Option<CsrFacts>,
    /// When csr-approver wrote the decision it carries, if it does.
    ours_at: Option<Timestamp>,
}

impl SeenCsr {
    /// The node the CSR's subject names, if its request could be read.
    pub(super) fn node(&self) -> Option<&str> {
        self.summary.node_name.as_deref()
    }

    /// `known`: the request of this very object (same uid) as parsed before, if it was.
    pub(super) fn of(
        csr: &CertificateSigningRequest,
        known: Option<Arc<Result<ParsedRequest, RequestError>>>,
    ) -> SeenCsr {
        // Only a pending CSR is decided on, so only its request is verified; a decided one
        // is summarised for the rules that count decisions — from its verified parse if it
        // was seen pending (its approval is the usual next event), else from its subject.
        let (summary, pending) = match (facts::csr_state(csr), known) {
            (CsrState::Pending, known) => {
                let facts = facts_reusing(csr, known);
                (facts::csr_summary(&facts), Some(facts))
            }
            (_, Some(request)) if request.is_ok() => {
                let facts = facts::csr_facts_with_request(csr, request);
                (facts::csr_summary(&facts), None)
            }
            (decided, _) => (facts::decided_csr_summary(csr, decided), None),
        };
        SeenCsr {
            uid: csr.metadata.uid.clone(),
            summary,
            pending,
            ours_at: approval::written_decision(csr).and_then(|w| w.at),
        }
    }
}

/// The facts of `csr`, with its request as parsed before (`known`, same object) or now.
fn facts_reusing(
    csr: &CertificateSigningRequest,
    known: Option<Arc<Result<ParsedRequest, RequestError>>>,
) -> CsrFacts {
    match known {
        Some(request) => facts::csr_facts_with_request(csr, request),
        None => facts::csr_facts(csr),
    }
}

/// Read access to the inventory.
pub struct InventoryGuard<'a>(RwLockReadGuard<'a, CacheState>);

impl Deref for InventoryGuard<'_> {
    type Target = Inventory;

    fn deref(&self) -> &Inventory {
        &self.0.inventory
    }
}

impl ClusterCache {
    pub fn read(&self) -> InventoryGuard<'_> {
        InventoryGuard(
            self.state
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, CacheState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a verdict we wrote before its watch event arrives, so the duplicate and
    /// flood rules see it at once, and no older event or re-list can make it pending again.
    pub fn mark_decided(&self, name: &str, uid: Option<&str>, state: CsrState) {
        let at = Timestamp::now();
        let mut cache = self.write();
        cache.written.insert(
            name.to_string(),
            OwnVerdict {
                uid: uid.map(str::to_string),
                state,
                at,
            },
        );
        cache.inventory.set_csr_state(name, state, at);
    }

    /// The facts of `csr`, its request as its watch parsed it when the object was first
    /// seen pending (the usual case: the watch feeds the reconciles), else parsed now.
    pub fn csr_facts(&self, csr: &CertificateSigningRequest) -> CsrFacts {
        facts_reusing(csr, self.known_request(csr))
    }

    /// The request of `csr` as parsed when this object (its uid) was first seen pending.
    pub(super) fn known_request(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Option<Arc<Result<ParsedRequest, RequestError>>> {
        let cache = self.state.read().unwrap_or_else(|p| p.into_inner());
        cache.known_request(csr)
    }

    /// Takes in one CSR event, parsing its request only if this object was not seen
    /// pending before.
    pub(super) fn observe_event(&self, csr: &CertificateSigningRequest) {
        let seen = SeenCsr::of(csr, self.known_request(csr));
        self.write().observe_csr(seen);
    }

    #[cfg(test)]
    fn read_request(&self, name: &str) -> Option<Arc<Result<ParsedRequest, RequestError>>> {
        let cache = self.state.read().unwrap_or_else(|p| p.into_inner());
        cache.requests.get(name).map(|known| known.request.clone())
    }

    /// Shows the cache one CSR event, as its watch would.
    #[cfg(test)]
    pub(crate) fn observe(&self, csr: &CertificateSigningRequest) {
        self.observe_event(csr);
    }

    /// Changes the inventory directly, as a watch would.
    #[cfg(test)]
    pub(crate) fn edit(&self, change: impl FnOnce(&mut Inventory)) {
        change(&mut self.write().inventory);
    }

    /// Records a node's `NodeIdentity` as just written or read live (`None`: it has none),
    /// ahead of its watch event, so that the next decision sees it. A later watch event
    /// can only bring this version or a newer one: csr-approver is the record's only
    /// writer, and the write is checked against the live version (`approval::identity`).
    pub fn remember_identity(&self, node: &str, record: Option<NodeIdentity>) {
        let inventory = &mut self.write().inventory;
        match record {
            Some(record) => inventory.upsert_identity(record),
            None => inventory.remove_identity(node),
        }
    }

    /// Records evidence read on demand (`gather`).
    pub fn record(&self, reading: Reading) {
        reading.record(self.write().inventory.observations_mut());
    }

    /// Whether CSR `name` (with `uid`) is decided: by our own write (possibly ahead of the
    /// watch and of the reflector store) or as the watch last showed it.
    pub fn is_decided(&self, name: &str, uid: Option<&str>) -> bool {
        let cache = self.state.read().unwrap_or_else(|p| p.into_inner());
        match cache.written.get(name) {
            Some(own) if own.uid.as_deref() == uid => true,
            _ => cache
                .inventory
                .csr_state(name)
                .is_some_and(|s| s != CsrState::Pending),
        }
    }

    /// Name and uid of each CSR carrying a decision of ours written within the last
    /// minutes ([`approval::EXPLAINED_AFTER_THE_FACT_WITHIN`]), oldest first.
    pub fn recent_decisions_of_ours(&self, now: Timestamp) -> Vec<(String, Option<String>)> {
        let cache = self.state.read().unwrap_or_else(|p| p.into_inner());
        cache.recent.list(now)
    }

    /// Names of every pending kubelet CSR.
    pub(super) fn all_pending(&self) -> Vec<String> {
        self.read()
            .pending_since(Timestamp::MIN)
            .filter(|c| is_kubelet_signer(&c.signer))
            .map(|c| c.name.to_string())
            .collect()
    }

    /// Names of pending kubelet CSRs for any of `nodes`: what a change to them can unblock.
    pub(super) fn pending_for(&self, nodes: &[String]) -> Vec<String> {
        let inventory = self.read();
        nodes
            .iter()
            .flat_map(|node| inventory.csrs_for_node(node))
            .filter(|c| c.state == CsrState::Pending)
            .filter(|c| is_kubelet_signer(&c.signer))
            .map(|c| c.name.to_string())
            .collect()
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
