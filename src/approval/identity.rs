//! Recording in a node's `NodeIdentity`, before the approval that needs it, an identity
//! it mints (`record_minted`) or the serving addresses independent evidence vouched for
//! (`record_vouched`), and taking an identity's entry back when its approval was never
//! written.
//!
//! The decision was taken on the cache's copy of the record, and the write is made against
//! exactly that copy: a create when the decision saw none (409 if one exists), a replace
//! conditional on the resourceVersion it saw (409 if it changed — a write of a previous
//! leader the watch has not shown yet). On a conflict nothing is written, the live record
//! is read and the CSR is decided again on it: never a lost entry, never a decision on a
//! record older than the one written.

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
    /// The failure as the approval's own (its Event, metric and retry): an approval that
    /// mints an identity is not written without its record. A stale record is no failure
    /// (the CSR is decided again) and comes back as it was.
    pub fn into_approval_failure(self) -> Result<super::ApprovalError, RecordError> {
        match self {
            RecordError::Read { node, source } | RecordError::Write { node, source } => {
                Ok(super::ApprovalError::Record { node, source })
            }
            stale @ RecordError::Stale { .. } => Err(stale),
        }
    }

    pub fn source_error(&self) -> Option<&kube::Error> {
        match self {
            RecordError::Read { source, .. } | RecordError::Write { source, .. } => Some(source),
            RecordError::Stale { .. } => None,
        }
    }
}

/// Writes the change `change` makes to `node`'s record as the decision saw it, `seen`
/// (`None`: no record): `change` returns the record to write, or `None` when it already
/// holds what the approval needs. The write is conditional on that version — a create
/// fails when a record exists, a replace when it changed — so one request suffices; only
/// a conflict reads the live record, for the decision to be taken again on it. Returns
/// the record as it now is, for the cache (`None`: none, and none needed).
async fn record(
    api: &Api<NodeIdentity>,
    node: &str,
    seen: Option<&NodeIdentity>,
    change: impl FnOnce(Option<&NodeIdentity>) -> Option<NodeIdentity>,
) -> Result<Option<NodeIdentity>, RecordError> {
    let Some(next) = change(seen) else {
        return Ok(seen.cloned());
    };
    let written = match seen {
        None => api.create(&PostParams::default(), &next).await,
        // `next` carries the resourceVersion the decision saw.
        Some(_) => api.replace(node, &PostParams::default(), &next).await,
    };
    match written {
        Ok(record) => Ok(Some(record)),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
            Err(RecordError::Stale {
                node: node.to_string(),
                live: read_live(api, node).await?.map(Box::new),
            })
        }
        Err(source) => Err(RecordError::Write {
            node: node.to_string(),
            source,
        }),
    }
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
    record(api, node, seen, |seen| match seen {
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
    record(api, node, seen, |seen| {
        seen.map_or_else(|| NodeIdentity::empty(node), Clone::clone)
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
    let Some(next) = read_live(api, node)
        .await?
        .and_then(|record| record.without(name, uid))
    else {
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

/// `node`'s record as the API server has it now (a quorum read).
async fn read_live(
    api: &Api<NodeIdentity>,
    node: &str,
) -> Result<Option<NodeIdentity>, RecordError> {
    api.get_opt(node).await.map_err(|source| RecordError::Read {
        node: node.to_string(),
        source,
    })
}
