//! Records the certificates the signer issues for nodes that have a `NodeIdentity`: the
//! newest client and serving certificate of each (serial, notBefore, notAfter), so that
//! what a node holds stays known after the CSR cleaner deletes its CSRs. Only a replica
//! that may write (the leader, unfenced) writes, and nothing in dry-run; notices that
//! arrive meanwhile wait, the newest per node and kind, and are written once it may.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use kube::api::PostParams;

use super::context::Context;
use crate::cluster::IssuedNotice;
use crate::policy::Mode;
use crate::vocabulary::Signer;

/// How often notices held back (not leader, dry-run, a failed write) are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(30);

pub(super) async fn record_issued(
    ctx: Arc<Context>,
    mut notices: mpsc::UnboundedReceiver<IssuedNotice>,
) {
    let mut waiting: BTreeMap<(String, &'static str), IssuedNotice> = BTreeMap::new();
    let mut retry = tokio::time::interval(RETRY_EVERY);
    loop {
        tokio::select! {
            notice = notices.next() => match notice {
                Some(notice) => {
                    let kind = match notice.issued.signer {
                        Signer::Client => "client",
                        Signer::Serving => "serving",
                    };
                    let key = (notice.node.clone(), kind);
                    let newer = waiting.get(&key).is_none_or(|held| {
                        held.issued.certificate.not_after < notice.issued.certificate.not_after
                    });
                    if newer {
                        waiting.insert(key, notice);
                    }
                }
                None => return,
            },
            _ = retry.tick() => {}
        }
        if !may_write(&ctx) {
            continue;
        }
        let due = std::mem::take(&mut waiting);
        for (key, notice) in due {
            if !record(&ctx, &notice).await {
                waiting.insert(key, notice);
            }
        }
    }
}

fn may_write(ctx: &Context) -> bool {
    ctx.leader.may_write()
        && ctx
            .policy
            .get()
            .is_some_and(|policy| policy.mode == Mode::Enforce)
}

/// Writes `notice` into its node's record, conditional on the version cached (re-read once
/// on a conflict). Whether it is done (written, or nothing left to write).
async fn record(ctx: &Context, notice: &IssuedNotice) -> bool {
    for _ in 0..2 {
        let Some(current) = ctx.cache.read().identity(&notice.node).cloned() else {
            return true; // the record was deleted: nothing to add to
        };
        let Some(next) = current.with_issued(&notice.issued) else {
            return true;
        };
        match ctx
            .identities
            .replace(&notice.node, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                ctx.cache.remember_identity(&notice.node, Some(written));
                return true;
            }
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                match ctx.identities.get_opt(&notice.node).await {
                    Ok(live) => ctx.cache.remember_identity(&notice.node, live),
                    Err(error) => {
                        ctx.metrics.count_api_error("get");
                        tracing::warn!(node = %notice.node, %error, "re-reading NodeIdentity failed; retrying later");
                        return false;
                    }
                }
            }
            Err(error) => {
                ctx.metrics.count_api_error("update");
                tracing::warn!(node = %notice.node, %error, "recording the issued certificate failed; retrying later");
                return false;
            }
        }
    }
    false
}
