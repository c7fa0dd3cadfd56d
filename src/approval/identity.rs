//! Recording in a node's `NodeIdentity`, before the approval that needs it, an identity
//! it mints (`record_minted`) or the serving addresses independent evidence vouched for
//! (`record_vouched`), and taking an identity's entry back when its approval was never
//! written.
//!
//! The decision was taken on the cache's copy of the record. The write is made against
//! exactly that copy: the live record is read (a quorum read) and, if it is not the
//! version the decision saw — a write of a previous leader the watch has not shown yet —
//! nothing is written and the CSR is decided again on the fresh record. The PUT itself is
//! conditional on that version, so a record changed in between is a 409, never a lost
//! entry.

use jiff::Timestamp;
use kube::api::{Api, PostParams};

use crate::identity::{HostGeneration, Minted, NodeIdentity};
use crate::vocabulary::AddressValue;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("reading NodeIdentity {node}: {source}")]
    Read { node: String, source: kube::Error },
    #[error("writing NodeIdentity {node}: {source}")]
    Write { node: String, source: kube::Error },
    /// The record changed since the decision read it: decide again on the new one.
    #[error("NodeIdentity {node} changed since the decision read it; deciding again")]
    Stale {
        node: String,
        live: Option<Box<NodeIdentity>>,
    },
}

impl RecordError {
    pub fn source_error(&self) -> Option<&kube::Error> {
        match self {
            RecordError::Read { source, .. } | RecordError::Write { source, .. } => Some(source),
            RecordError::Stale { .. } => None,
        }
    }
}

/// Writes the change `change` makes to `node`'s record, whose version the decision saw
/// is `seen` (`None`: no record): `change` gets the live record (`None`: none yet) and
/// returns the record to write, or `None` when it already holds what the approval needs.
/// Returns the record as it now is, for the cache (`None`: none, and none needed).
pub async fn record(
    api: &Api<NodeIdentity>,
    node: &str,
    seen: Option<&NodeIdentity>,
    change: impl FnOnce(Option<&NodeIdentity>) -> Option<NodeIdentity>,
) -> Result<Option<NodeIdentity>, RecordError> {
    let live = api
        .get_opt(node)
        .await
        .map_err(|source| RecordError::Read {
            node: node.to_string(),
            source,
        })?;
    let version = |r: Option<&NodeIdentity>| r.and_then(|r| r.metadata.resource_version.clone());
    if version(live.as_ref()) != version(seen) {
        return Err(RecordError::Stale {
            node: node.to_string(),
            live: live.map(Box::new),
        });
    }
    let write = |source| RecordError::Write {
        node: node.to_string(),
        source,
    };
    let Some(next) = change(live.as_ref()) else {
        return Ok(live);
    };
    match live {
        // Created, never replaced, when there is none: two writers creating at once get
        // one 409 and one record.
        None => api.create(&PostParams::default(), &next).await,
        // `next` carries the live resourceVersion: a record changed since is a 409.
        Some(_) => api.replace(node, &PostParams::default(), &next).await,
    }
    .map(Some)
    .map_err(write)
}

/// Adds `minted` to `node`'s record (see [`record`]): a crash between this write and the
/// approval leaves an identity recorded, never one approved and forgotten.
pub async fn record_minted(
    api: &Api<NodeIdentity>,
    node: &str,
    seen: Option<&NodeIdentity>,
    generation: HostGeneration,
    minted: Minted,
) -> Result<Option<NodeIdentity>, RecordError> {
    record(api, node, seen, |live| match live {
        None => Some(NodeIdentity::first(generation, minted, node)),
        // `None`: recorded already; this CSR's approval was interrupted after its record.
        Some(record) => record.with_minted(generation, minted),
    })
    .await
}

/// Records in `node`'s record (see [`record`]) that independent evidence vouched for
/// serving `addresses` at `at`, unless it says so already within the refresh interval.
pub async fn record_vouched(
    api: &Api<NodeIdentity>,
    node: &str,
    seen: Option<&NodeIdentity>,
    addresses: &[AddressValue],
    at: Timestamp,
) -> Result<Option<NodeIdentity>, RecordError> {
    record(api, node, seen, |live| {
        live.map_or_else(|| NodeIdentity::empty(node), Clone::clone)
            .with_vouched(addresses, at)
    })
    .await
}

/// Takes back the entry of CSR `name`/`uid` from `node`'s record: its approval was never
/// written (the CSR was deleted, re-created or decided by someone else meanwhile). Best
/// effort: a record left behind only holds a later request back, and says which CSR.
pub async fn take_back(
    api: &Api<NodeIdentity>,
    node: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<Option<NodeIdentity>, RecordError> {
    let live = api
        .get_opt(node)
        .await
        .map_err(|source| RecordError::Read {
            node: node.to_string(),
            source,
        })?;
    let Some(next) = live.and_then(|record| record.without(name, uid)) else {
        return Ok(None);
    };
    api.replace(node, &PostParams::default(), &next)
        .await
        .map(Some)
        .map_err(|source| RecordError::Write {
            node: node.to_string(),
            source,
        })
}
