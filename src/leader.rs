//! Leader election on a `coordination.k8s.io/v1` Lease: every replica watches and keeps its
//! caches warm, only the holder writes — and only while its hold is fresh.
//!
//! The loop is our own (not kube-lease-manager's) because the write gate needs the one fact
//! that crate keeps private: when the last renewal succeeded. While its renewals failed
//! that crate went on reporting "leader" (it retries with a backoff of up to 30 s and only
//! reports changes it has read from the API), so with etcd down a replica kept writing past
//! its Lease, when a standby may already have taken it over.
//!
//! How it decides (client-go's rules, on a monotonic clock):
//! - every `retry_every` the replica GETs the Lease; the holder PUTs a new `renewTime`,
//!   conditional on the resourceVersion it read (a write by anyone else in between is a 409);
//! - a standby takes the Lease when it has no holder, or when the Lease has not changed for
//!   a whole `leaseDurationSeconds` **as this replica observed it** — never by comparing the
//!   holder's `renewTime` with its own wall clock, so clock skew cannot hand out a Lease early;
//! - the holder writes only until `fence_after` (two thirds of the lease) has passed since the
//!   last renewal that succeeded, measured from when that renewal was sent: by then no standby
//!   can have seen the Lease unchanged for a whole lease. Past it, the replica is fenced —
//!   `csr_approver_leader` 0, a warning in the log — until a renewal succeeds again.

use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;

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

pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration_seconds: u64,
}

/// How often the Lease is looked at, and when a holder that cannot renew stops writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// The Lease's duration, written into it: how long a standby waits, from when it last
    /// saw the Lease change, before taking it.
    pub lease: Duration,
    /// How long after the last successful renewal (from when it was sent) the holder may
    /// still write. Two thirds of the lease, as client-go's renew deadline (10 s of 15 s):
    /// the last third absorbs clock-rate drift and writes already in flight.
    pub fence_after: Duration,
    /// How often the holder renews and a standby looks (a fifth of `fence_after`: 2 s for
    /// 15 s, as client-go's retry period).
    pub retry_every: Duration,
    /// How long one attempt (GET, then PUT or POST) may take: the client has no read
    /// timeout, and an API server whose etcd is gone holds requests for a minute. A quarter
    /// of `fence_after`, so that after the last success at least two more attempts start
    /// before the fence even when each one hangs.
    pub attempt_timeout: Duration,
}

impl Timings {
    pub fn for_lease(seconds: u64) -> Timings {
        let lease = Duration::from_secs(seconds);
        let fence_after = lease * 2 / 3;
        Timings {
            lease,
            fence_after,
            retry_every: fence_after / 5,
            attempt_timeout: fence_after / 4,
        }
    }
}

/// What the Lease loop last established about this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    /// No leader election: the only replica always writes.
    Unelected,
    /// Another replica holds the Lease, or this one has not (yet) read it.
    Standby,
    /// This replica holds the Lease; `renewed` is when the last acquisition or renewal that
    /// succeeded was sent.
    Holder { renewed: Instant },
}

/// Whether a replica in `term` may write at `now`: the fence, as a pure function.
fn may_write(term: Term, fence_after: Duration, now: Instant) -> bool {
    match term {
        Term::Unelected => true,
        Term::Standby => false,
        Term::Holder { renewed } => now.saturating_duration_since(renewed) < fence_after,
    }
}

/// The gate in front of every write: the Lease held, and renewed recently enough.
#[derive(Debug, Clone)]
pub struct WriteGate {
    term: watch::Receiver<Term>,
    fence_after: Duration,
}

impl WriteGate {
    /// Evaluated at the moment of asking, on the monotonic clock: a holder whose renewals
    /// stopped is fenced even before its Lease loop wakes up to say so.
    pub fn may_write(&self) -> bool {
        may_write(*self.term.borrow(), self.fence_after, Instant::now())
    }

    /// Open for good: no leader election.
    pub fn always() -> WriteGate {
        // A receiver keeps the last value after its sender is gone.
        let (_, term) = watch::channel(Term::Unelected);
        WriteGate {
            term,
            fence_after: Duration::MAX,
        }
    }
}

/// Whether this replica may write, and the task that keeps the Lease.
pub struct Leadership {
    pub gate: WriteGate,
    stop: Option<oneshot::Sender<()>>,
    lease_task: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Stops writing, then gives the Lease up (if held) so a standby takes over at once
    /// rather than after it expires. Waits at most `timeout` for the API server.
    pub async fn release(mut self, timeout: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.lease_task.take()
            && tokio::time::timeout(timeout, task).await.is_err()
        {
            tracing::warn!(
                ?timeout,
                "releasing the Lease timed out; it will expire instead"
            );
        }
    }
}

/// Without leader election this replica always writes (a single replica only: the Helm
/// chart refuses replicas > 1 without it).
pub fn always_leader(metrics: &Metrics) -> Leadership {
    metrics.leader.set(1);
    Leadership {
        gate: WriteGate::always(),
        stop: None,
        lease_task: None,
    }
}

/// Starts the Lease loop. It never fails: an unreachable API server is retried every
/// `retry_every`, standing by meanwhile. `on_elected` is sent each time writing (re)starts,
/// so that CSRs seen while standing by or fenced are reconciled.
pub fn elect(
    client: Client,
    config: LeaseConfig,
    metrics: Metrics,
    on_elected: UnboundedSender<()>,
) -> Leadership {
    let timings = Timings::for_lease(config.duration_seconds);
    let (term_sender, term) = watch::channel(Term::Standby);
    let (stop, stopped) = oneshot::channel();
    let lease = LeaseLoop {
        api: Api::namespaced(client, &config.namespace),
        namespace: config.namespace,
        name: config.name,
        identity: config.identity,
        timings,
        observed: None,
    };
    tokio::spawn(report(
        term.clone(),
        timings,
        lease.identity.clone(),
        metrics,
        on_elected,
    ));
    let lease_task = tokio::spawn(lease.run(term_sender, stopped));
    Leadership {
        gate: WriteGate {
            term,
            fence_after: timings.fence_after,
        },
        stop: Some(stop),
        lease_task: Some(lease_task),
    }
}

/// Keeps `csr_approver_leader` and the log in step with the gate, waking at the fence
/// deadline so a holder that cannot renew reports itself fenced on time.
async fn report(
    mut term: watch::Receiver<Term>,
    timings: Timings,
    identity: String,
    metrics: Metrics,
    on_elected: UnboundedSender<()>,
) {
    let mut writing = false;
    let mut first = true;
    loop {
        let current = *term.borrow_and_update();
        let now = Instant::now();
        let may = may_write(current, timings.fence_after, now);
        if may != writing || first {
            metrics.leader.set(i64::from(may));
            match (may, current) {
                (true, _) => {
                    tracing::info!(%identity, "leading: the Lease is held and fresh; writing");
                    let _ = on_elected.unbounded_send(());
                }
                (false, Term::Holder { renewed }) => tracing::warn!(
                    %identity,
                    since_renewal = ?now.saturating_duration_since(renewed),
                    fence_after = ?timings.fence_after,
                    lease = ?timings.lease,
                    "fenced: the Lease could not be renewed in time; writing nothing until a renewal succeeds"
                ),
                (false, _) => tracing::info!(%identity, "standing by: not the leader"),
            }
            writing = may;
            first = false;
        }
        let fence_at = match current {
            Term::Holder { renewed } if may => Some(renewed + timings.fence_after),
            _ => None,
        };
        tokio::select! {
            changed = term.changed() => if changed.is_err() { break },
            () = sleep_until(fence_at) => {}
        }
    }
    metrics.leader.set(0);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
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

struct LeaseLoop {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: Timings,
    /// The resourceVersion last read and when it was first seen.
    observed: Option<(String, Instant)>,
}

impl LeaseLoop {
    async fn run(mut self, term: watch::Sender<Term>, mut stop: oneshot::Receiver<()>) {
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
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(self.api_error("get"))?
        else {
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
        match self.api.replace(&self.name, &Self::params(), &lease).await {
            Ok(written) => {
                self.observe(&written, now);
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
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
            let Some(mut lease) = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(self.api_error("get"))?
            else {
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
            match self.api.replace(&self.name, &Self::params(), &lease).await {
                Ok(_) => Ok(true),
                // Written by someone else since: not ours to clear any more.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(self.api_error("update")(error)),
            }
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
    fn the_fence_closes_two_thirds_into_the_lease_after_the_last_renewal() {
        let timings = Timings::for_lease(15);
        assert_eq!(timings.fence_after, 10 * SECOND);
        let t0 = Instant::now();
        let holder = Term::Holder { renewed: t0 };
        assert!(may_write(holder, timings.fence_after, t0));
        assert!(may_write(
            holder,
            timings.fence_after,
            t0 + 10 * SECOND - Duration::from_millis(1)
        ));
        assert!(
            !may_write(holder, timings.fence_after, t0 + 10 * SECOND),
            "fenced at the deadline"
        );
        assert!(
            !may_write(holder, timings.fence_after, t0 + 20 * SECOND),
            "still fenced past the lease: only a renewal reopens"
        );
        // A renewal that succeeds reopens, counted from when it was sent.
        let renewed = Term::Holder {
            renewed: t0 + 20 * SECOND,
        };
        assert!(may_write(renewed, timings.fence_after, t0 + 21 * SECOND));
    }

    #[test]
    fn standbys_never_write_and_the_unelected_always_do() {
        let t0 = Instant::now();
        assert!(!may_write(Term::Standby, 10 * SECOND, t0));
        assert!(may_write(
            Term::Unelected,
            Duration::MAX,
            t0 + 3600 * SECOND
        ));
        assert!(WriteGate::always().may_write());
    }

    #[test]
    fn the_fence_comes_before_any_standby_can_take_over() {
        for seconds in [3, 4, 5, 15, 60, 3600] {
            let t = Timings::for_lease(seconds);
            assert!(t.fence_after < t.lease, "{t:?}");
            // After a success that took its whole timeout, two more tries that hang
            // still start before the fence.
            assert!(
                (t.attempt_timeout + t.retry_every) * 2 < t.fence_after,
                "{t:?}"
            );
            assert!(t.attempt_timeout > Duration::ZERO && t.retry_every > Duration::ZERO);
        }
    }

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
