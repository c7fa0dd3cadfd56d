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

mod lease;

use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use kube::Client;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;
use lease::LeaseLoop;

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

    /// Closed for good: a standby that never wins.
    #[cfg(test)]
    pub(crate) fn standby() -> WriteGate {
        let (_, term) = watch::channel(Term::Standby);
        WriteGate {
            term,
            fence_after: Duration::ZERO,
        }
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
    let identity = config.identity.clone();
    let lease = LeaseLoop::new(client, config, timings);
    tokio::spawn(report(term.clone(), timings, identity, metrics, on_elected));
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
}
