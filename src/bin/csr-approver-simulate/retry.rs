//! Retrying through a control-plane outage, as the machine controller and the kubelet do.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

/// 250 ms doubling to 2 s: a restarted apiserver is used again within 2 s of being back.
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .without_max_times()
}

/// Whether a failed call is worth repeating, as a kubelet repeats it: anything but a
/// request the apiserver calls malformed (400, 422). That includes outages, broken
/// connections, overload — and 403, which a freshly restarted apiserver answers until its
/// RBAC cache has synced (the kubelet's bootstrap keeps trying through it too).
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => !matches!(status.code, 400 | 409 | 422),
        kube::Error::SerdeError(_) | kube::Error::FromUtf8(_) => false,
        _ => true,
    }
}

fn already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists")
}

/// Repeats `call` through transient failures until `deadline`. With `created_by_us`, an
/// `AlreadyExists` answer means an earlier attempt landed but its response was lost:
/// success, with nothing to return.
pub async fn persist<T, F, Fut>(
    what: &str,
    deadline: Instant,
    created_by_us: bool,
    call: F,
) -> Result<Option<T>, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let outcome = call
        .retry(backoff())
        .sleep(tokio::time::sleep)
        .when(|error| is_transient(error) && Instant::now() < deadline)
        .notify(|error, _| tracing::debug!(what, %error, "transient failure; retrying"))
        .await;
    match outcome {
        Ok(value) => Ok(Some(value)),
        Err(error) if created_by_us && already_exists(&error) => Ok(None),
        Err(error) => Err(format!("{what}: {error}")),
    }
}
