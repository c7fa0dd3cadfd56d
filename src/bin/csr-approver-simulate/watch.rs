//! How the simulator learns that a CSR was decided or explained: two watches (this run's
//! CSRs, the Warning Events about CSRs) that wake whoever waits for that CSR.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use csr_approver::cluster::WatchBackoff;
use csr_approver::inventory::CsrState;
use futures::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::oneshot;

use crate::RUN_LABEL;

/// Who waits for which CSR: its decision, and for a forgery also the note of the Warning
/// Event in which csr-approver explains why it left the CSR pending.
#[derive(Default)]
pub struct Waits {
    decided: Mutex<HashMap<String, oneshot::Sender<CsrState>>>,
    explained: Mutex<HashMap<String, oneshot::Sender<String>>>,
}

/// A waiter that panicked cannot leave a map half-updated: carry on with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Waits {
    pub fn decision(&self, csr: &str) -> oneshot::Receiver<CsrState> {
        let (tell, told) = oneshot::channel();
        lock(&self.decided).insert(csr.to_string(), tell);
        told
    }

    pub fn explanation(&self, csr: &str) -> oneshot::Receiver<String> {
        let (tell, told) = oneshot::channel();
        lock(&self.explained).insert(csr.to_string(), tell);
        told
    }

    /// Whichever ended the wait for `csr`, the other waiter is left over.
    pub fn forget(&self, csr: &str) {
        lock(&self.decided).remove(csr);
        lock(&self.explained).remove(csr);
    }

    fn decided(&self, csr: &str, state: CsrState) {
        if let Some(tell) = lock(&self.decided).remove(csr) {
            let _ = tell.send(state);
        }
    }

    fn explained(&self, csr: &str, note: String) {
        if let Some(tell) = lock(&self.explained).remove(csr) {
            let _ = tell.send(note);
        }
    }
}

/// A background task that ends with its owner: a watch outliving its run would spin on a
/// closed client while the runtime shuts down.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    pub fn spawn(task: impl Future<Output = ()> + Send + 'static) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(task))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Calls `each` with every object the watch applies, retrying through watch errors.
async fn for_each_applied<K>(api: Api<K>, config: watcher::Config, mut each: impl FnMut(K))
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let stream = watcher::watcher(api, config).backoff(WatchBackoff::default());
    let mut stream = std::pin::pin!(stream.applied_objects());
    while let Some(applied) = stream.next().await {
        match applied {
            Ok(object) => each(object),
            Err(error) => tracing::warn!(%error, "watch error; retrying"),
        }
    }
}

/// Watches this run's CSRs and wakes the waiter of each one that is decided.
pub async fn decisions(admin: Client, run_id: String, waits: Arc<Waits>) {
    let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={run_id}"));
    for_each_applied(
        Api::<CertificateSigningRequest>::all(admin),
        config,
        |csr| {
            let state = csr_approver::facts::csr_state(&csr);
            if state != CsrState::Pending {
                waits.decided(csr.metadata.name.as_deref().unwrap_or_default(), state);
            }
        },
    )
    .await;
}

/// Watches the Warning Events about CSRs (csr-approver records one for each CSR it leaves
/// pending) and hands the note to the forgery waiting for it.
pub async fn explanations(admin: Client, waits: Arc<Waits>) {
    let config = watcher::Config::default()
        .fields("involvedObject.kind=CertificateSigningRequest,type=Warning");
    for_each_applied(Api::<CoreEvent>::all(admin), config, |event| {
        let Some(name) = event.involved_object.name.as_deref() else {
            return;
        };
        let note = format!(
            "{}: {}",
            event.reason.as_deref().unwrap_or_default(),
            event.message.as_deref().unwrap_or_default()
        );
        waits.explained(name, note);
    })
    .await;
}
