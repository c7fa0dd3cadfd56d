//! The Lease loop: one look at the Lease every `retry_every` (GET, then the conditional
//! PUT that renews or acquires it), and its release on the way out.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::{LeaseConfig, Term, Timings};

/// The field manager of our Lease writes (as kube-lease-manager used, so a Lease written by
/// an older replica during a rolling update keeps one manager).
const FIELD_MANAGER: &str = "csr-approver";

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{verb} Lease {namespace}/{name}: {source}")]
    Api {
        verb: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("no answer from the API server within {0:?}")]
    TimedOut(Duration),
}

/// What to do with a Lease as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Renew,
    Acquire,
    Wait,
}

/// Pure: `holder` and `lease_seconds` as read, `observed_at` when this replica first saw
/// the Lease as it is now (same resourceVersion).
fn next_move(
    holder: Option<&str>,
    lease_seconds: Option<i32>,
    identity: &str,
    default_lease: Duration,
    observed_at: Instant,
    now: Instant,
) -> Move {
    match holder.filter(|h| !h.is_empty()) {
        None => Move::Acquire,
        Some(holder) if holder == identity => Move::Renew,
        Some(_) => {
            let lease = lease_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map_or(default_lease, Duration::from_secs);
            if now.saturating_duration_since(observed_at) >= lease {
                Move::Acquire
            } else {
                Move::Wait
            }
        }
    }
}

pub(super) struct LeaseLoop {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: Timings,
    /// The resourceVersion last read and when it was first seen.
    observed: Option<(String, Instant)>,
}

impl LeaseLoop {
    pub(super) fn new(client: kube::Client, config: LeaseConfig, timings: Timings) -> LeaseLoop {
        let LeaseConfig {
            namespace,
            name,
            identity,
            duration_seconds: _,
        } = config;
        LeaseLoop {
            api: Api::namespaced(client, &namespace),
            namespace,
            name,
            identity,
            timings,
            observed: None,
        }
    }

    pub(super) async fn run(mut self, term: watch::Sender<Term>, mut stop: oneshot::Receiver<()>) {
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let attempt = tokio::time::timeout(self.timings.attempt_timeout, self.attempt(started));
            let outcome = tokio::select! {
                outcome = attempt => outcome
                    .unwrap_or(Err(AttemptError::TimedOut(self.timings.attempt_timeout))),
                _ = &mut stop => break,
            };
            match outcome {
                Ok(held) => {
                    if failures > 0 {
                        tracing::info!(failures, "the Lease is readable again");
                        failures = 0;
                    }
                    term.send_replace(if held {
                        Term::Holder { renewed: started }
                    } else {
                        Term::Standby
                    });
                }
                // The term stays as it was: a holder's ages until the fence closes the gate.
                Err(error) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(%error, failures, "reading or renewing the Lease failed; retrying");
                    } else {
                        tracing::debug!(%error, failures, "reading or renewing the Lease failed");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.timings.retry_every) => {}
                _ = &mut stop => break,
            }
        }
        // No write may start after this, then the Lease goes.
        let held = matches!(term.send_replace(Term::Standby), Term::Holder { .. });
        if held {
            match self.release().await {
                Ok(true) => tracing::info!("Lease released"),
                Ok(false) => tracing::info!("the Lease was no longer ours; nothing to release"),
                Err(error) => tracing::warn!(%error, "releasing the Lease failed; it will expire"),
            }
        }
    }

    fn api_error(&self, verb: &'static str) -> impl Fn(kube::Error) -> AttemptError + '_ {
        move |source| AttemptError::Api {
            verb,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    fn params() -> PostParams {
        PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        }
    }

    /// One look at the Lease: `Ok(true)` when this replica holds it as of `now` (a write
    /// sent after `now` succeeded), `Ok(false)` when another one does or won a race.
    async fn attempt(&mut self, now: Instant) -> Result<bool, AttemptError> {
        let wall = MicroTime(Timestamp::now());
        let lease_seconds = i32::try_from(self.timings.lease.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.read().await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(lease_seconds),
                    acquire_time: Some(wall.clone()),
                    renew_time: Some(wall),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&Self::params(), &lease).await {
                Ok(created) => {
                    self.observe(&created, now);
                    Ok(true)
                }
                // Another replica created it first: it holds it.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(self.api_error("create")(error)),
            };
        };
        let observed_at = self.observe(&lease, now);
        let mut spec = lease.spec.take().unwrap_or_default();
        let decision = next_move(
            spec.holder_identity.as_deref(),
            spec.lease_duration_seconds,
            &self.identity,
            self.timings.lease,
            observed_at,
            now,
        );
        match decision {
            Move::Wait => return Ok(false),
            Move::Renew => {}
            Move::Acquire => {
                spec.holder_identity = Some(self.identity.clone());
                spec.acquire_time = Some(wall.clone());
                spec.lease_transitions =
                    Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
        }
        spec.renew_time = Some(wall);
        spec.lease_duration_seconds = Some(lease_seconds);
        lease.spec = Some(spec);
        lease.metadata.managed_fields = None;
        // Conditional on the resourceVersion just read: if anyone wrote the Lease since,
        // this is a 409 and the next look decides again.
        let written = self.write(&lease).await?;
        if let Some(written) = &written {
            self.observe(written, now);
        }
        Ok(written.is_some())
    }

    async fn read(&self) -> Result<Option<Lease>, AttemptError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(self.api_error("get"))
    }

    /// Replaces the Lease, conditional on the resourceVersion in `lease`: `None` when
    /// someone else wrote it since (a 409).
    async fn write(&self, lease: &Lease) -> Result<Option<Lease>, AttemptError> {
        match self.api.replace(&self.name, &Self::params(), lease).await {
            Ok(written) => Ok(Some(written)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(error) => Err(self.api_error("update")(error)),
        }
    }

    /// Records when this version of the Lease was first seen; returns that instant.
    fn observe(&mut self, lease: &Lease, now: Instant) -> Instant {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                self.observed = Some((version, now));
                now
            }
        }
    }

    /// Clears the holder if it is still us: `Ok(false)` when it was not.
    async fn release(&self) -> Result<bool, AttemptError> {
        let released = async {
            let Some(mut lease) = self.read().await? else {
                return Ok(false);
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.acquire_time = None;
            spec.renew_time = None;
            lease.metadata.managed_fields = None;
            // Written by someone else since (`None`): not ours to clear any more.
            Ok(self.write(&lease).await?.is_some())
        };
        tokio::time::timeout(self.timings.attempt_timeout, released)
            .await
            .unwrap_or(Err(AttemptError::TimedOut(self.timings.attempt_timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_standby_takes_the_lease_only_once_it_has_seen_it_unchanged_for_a_whole_lease() {
        let t0 = Instant::now();
        let lease = 15 * SECOND;
        let take =
            |holder, seconds, at: Duration| next_move(holder, seconds, "b", lease, t0, t0 + at);
        assert_eq!(take(Some("a"), Some(15), 14 * SECOND), Move::Wait);
        assert_eq!(take(Some("a"), Some(15), 15 * SECOND), Move::Acquire);
        // The holder's own duration counts, not ours.
        assert_eq!(take(Some("a"), Some(30), 20 * SECOND), Move::Wait);
        assert_eq!(take(Some("a"), Some(30), 30 * SECOND), Move::Acquire);
        // Without a usable duration: ours.
        assert_eq!(take(Some("a"), None, 14 * SECOND), Move::Wait);
        assert_eq!(take(Some("a"), Some(0), 14 * SECOND), Move::Wait);
        assert_eq!(take(Some("a"), Some(-1), 15 * SECOND), Move::Acquire);
        // Released (no holder, or kube's empty string): at once.
        assert_eq!(take(None, None, Duration::ZERO), Move::Acquire);
        assert_eq!(take(Some(""), Some(15), Duration::ZERO), Move::Acquire);
        // Our own: renew, whatever its age.
        assert_eq!(take(Some("b"), Some(15), Duration::ZERO), Move::Renew);
        assert_eq!(take(Some("b"), Some(15), 100 * SECOND), Move::Renew);
    }
}
