//! Recording an identity in its node's `NodeIdentity` before the approval that mints it
//! (`identity`), and taking the entry back when that approval was never written.
//!
//! The decision was taken on the cache's copy of the record, and the write is made against
//! exactly that copy: a create when the decision saw none (409 if one exists), a replace
//! conditional on the resourceVersion it saw (409 if it changed — a write of a previous
//! leader the watch has not shown yet). On a conflict nothing is written, the live record
//! is read and the CSR is decided again on it: never a lost entry, never a decision on a
//! record older than the one written.

use kube::api::{Api, PostParams};

use crate::identity::{HostGeneration, Minted, NodeIdentity};

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

/// Adds `minted` to `node`'s record, whose version the decision saw is `seen` (`None`: no
/// record). Returns the record as written, for the cache. The write is conditional on
/// that version — a create fails when a record exists, a replace when it changed — so one
/// request suffices; only a conflict reads the live record, for the decision to be taken
/// again on it.
pub async fn record_minted(
    api: &Api<NodeIdentity>,
    node: &str,
    seen: Option<&NodeIdentity>,
    generation: HostGeneration,
    minted: Minted,
) -> Result<NodeIdentity, RecordError> {
    let written = match seen {
        None => {
            api.create(
                &PostParams::default(),
                &NodeIdentity::first(generation, minted, node),
            )
            .await
        }
        Some(record) => match record.with_minted(generation, minted) {
            // Recorded already: this CSR's approval was interrupted after its record.
            None => return Ok(record.clone()),
            Some(next) => api.replace(node, &PostParams::default(), &next).await,
        },
    };
    match written {
        Ok(record) => Ok(record),
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
