//! How every watch (and start-up discovery) retries: kube-runtime's exponential backoff
//! over `backon`, with jitter so that replicas do not retry in lockstep after an API
//! server restart.

use std::time::Duration;

use kube::runtime::utils::Backoff;
use kube::runtime::watcher::ExponentialBackoff;

/// Watch retry delays: from 125–250 ms doubling to 1–2 s, each at a random point of its
/// range; reset by the first event after a failure. Never longer than 2 s: kube's default
/// grows to 30 s, which after a short control-plane outage would leave a joining node
/// waiting far longer than the outage itself.
pub struct WatchBackoff(ExponentialBackoff);

impl WatchBackoff {
    /// The jitter adds up to as much again: delays run from `FIRST` to twice `MAX`.
    const FIRST: Duration = Duration::from_millis(125);
    const MAX: Duration = Duration::from_secs(1);
    /// The longest delay any retry waits.
    pub const LONGEST: Duration = Duration::from_secs(2);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff(
            backon::ExponentialBuilder::default()
                .with_min_delay(Self::FIRST)
                .with_max_delay(Self::MAX)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .into(),
        )
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.0.next()
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_a_quarter_second_to_two_seconds_with_jitter_and_reset() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(12).collect();
        for (delay, base) in delays.iter().zip([125u64, 250, 500, 1000, 1000, 1000]) {
            let base = Duration::from_millis(base);
            assert!(
                *delay >= base && *delay < base * 2,
                "{delay:?} from {base:?}"
            );
        }
        assert!(
            delays.iter().all(|d| *d < WatchBackoff::LONGEST),
            "{delays:?}"
        );
        backoff.reset();
        let first = backoff.next().unwrap_or(Duration::MAX);
        assert!(first < Duration::from_millis(250), "reset: {first:?}");
        // Jitter: two replicas do not wait alike.
        let other: Vec<Duration> = WatchBackoff::default().take(12).collect();
        assert_ne!(delays, other, "jittered");
    }
}
