//! One simulation's clients and the submission of a CSR, waited for until it is decided.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use csr_approver::inventory::CsrState;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, PostParams};
use kube::{Client, Config};
use tokio::sync::oneshot;

use crate::RUN_LABEL;
use crate::retry::persist;
use crate::watch::Waits;

pub const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];
pub const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];

pub struct Sim {
    pub admin: Client,
    pub bootstrapper: Client,
    pub base: Config,
    pub run_id: String,
    pub waits: Arc<Waits>,
    /// The OpenShift Machine API, when it is installed and Machines are wanted.
    pub machine_api: Option<ApiResource>,
    pub timeout: Duration,
    /// Nodes already hold a client certificate: only their serving CSR is submitted.
    pub serving_only: bool,
}

/// How the wait for a CSR ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    Decided(CsrState),
    /// Left pending, with a Warning Event saying why (its reason and note).
    Explained(String),
    TimedOut,
}

/// A CSR to submit: who asks, for which signer and usages, with which request.
pub struct Submission<'a> {
    pub client: &'a Client,
    pub name: &'a str,
    pub signer: &'a str,
    pub usages: &'a [&'a str],
    pub pem: Vec<u8>,
}

/// A client that acts as `user` in `groups` (the admin's credentials, impersonating).
pub fn impersonating(base: &Config, user: &str, groups: &[&str]) -> Result<Client, kube::Error> {
    let mut config = base.clone();
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Client::try_from(config)
}

impl Sim {
    /// The label that marks what this run created (for its watch and for clean-up).
    pub fn labels(&self) -> Option<BTreeMap<String, String>> {
        Some([(RUN_LABEL.to_string(), self.run_id.clone())].into())
    }

    /// `system:node:<node>` in `system:nodes`: the kubelet once it has its client certificate.
    pub fn as_node(&self, node: &str) -> Result<Client, String> {
        impersonating(
            &self.base,
            &format!("system:node:{node}"),
            &["system:nodes"],
        )
        .map_err(|e| e.to_string())
    }

    /// Submits a CSR and waits until it is decided (or the timeout): an undecided one is
    /// `Pending`.
    pub async fn submit(&self, csr: Submission<'_>) -> Result<(Duration, CsrState), String> {
        let (elapsed, waited) = self.submit_until(csr, None).await?;
        match waited {
            Waited::Decided(state) => Ok((elapsed, state)),
            Waited::Explained(_) | Waited::TimedOut => Ok((elapsed, CsrState::Pending)),
        }
    }

    /// [`Sim::submit`]; with `explained`, the wait also ends when a Warning Event explains
    /// the CSR (a forgery left pending is done then: waiting out the timeout would tell
    /// nothing more, and looks hung).
    pub async fn submit_until(
        &self,
        csr: Submission<'_>,
        explained: Option<oneshot::Receiver<String>>,
    ) -> Result<(Duration, Waited), String> {
        let Submission {
            client,
            name,
            signer,
            usages,
            pem,
        } = csr;
        let told = self.waits.decision(name);
        let object = CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: self.labels(),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem),
                signer_name: signer.to_string(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                ..Default::default()
            },
            status: None,
        };
        let started = Instant::now();
        let api = Api::<CertificateSigningRequest>::all(client.clone());
        let post = PostParams::default();
        persist(
            &format!("create CSR {name}"),
            started + self.timeout,
            true,
            || api.create(&post, &object),
        )
        .await?;
        let explained = async {
            match explained {
                Some(note) => note.await.ok(),
                None => None,
            }
        };
        let waited = tokio::select! {
            Ok(state) = told => Waited::Decided(state),
            Some(note) = explained => Waited::Explained(note),
            () = tokio::time::sleep(self.timeout) => Waited::TimedOut,
        };
        self.waits.forget(name);
        Ok((started.elapsed(), waited))
    }
}
