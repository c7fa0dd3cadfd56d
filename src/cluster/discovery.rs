//! Which Machine APIs the cluster has, asked once (`check --live`); only a definitive
//! answer counts. The controller watches the Machine CRDs instead (`crds`).

use kube::Client;
use kube::api::ApiResource;

use crate::policy::{CLUSTER_API_MACHINE_GROUP, OPENSHIFT_MACHINE_GROUP};

/// Why Machine API discovery gave no definitive answer.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(
        "the API server lists no {group} group but is not ready ({readyz}): a starting API server may not list every installed group yet"
    )]
    NotReady { group: &'static str, readyz: String },
}

/// The Machine APIs installed in the cluster, found by discovery. A group the API server
/// does not list is skipped: bare-metal clusters without a machine API rely on the policy
/// inventory. But "not installed" is believed only from an API server that says it is
/// ready (a starting one may list its custom resource groups late), and any other failure
/// (unreachable, 5xx, 403) is an error: taking either for "not installed" would silently
/// drop every Machine's evidence.
pub async fn discover_machine_apis(client: &Client) -> Result<Vec<ApiResource>, DiscoveryError> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for group in [OPENSHIFT_MACHINE_GROUP, CLUSTER_API_MACHINE_GROUP] {
        match kube::discovery::group(client, group).await {
            Ok(discovered) => match discovered.recommended_kind("Machine") {
                Some((resource, _)) => {
                    tracing::info!(group, version = %resource.version, "watching Machines");
                    found.push(resource);
                }
                None => tracing::info!(group, "API group has no Machine kind; skipped"),
            },
            Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => {
                missing.push(group);
            }
            Err(error) => return Err(error.into()),
        }
    }
    if let Some(&group) = missing.first() {
        api_server_ready(client)
            .await
            .map_err(|readyz| DiscoveryError::NotReady { group, readyz })?;
        for group in missing {
            tracing::info!(group, "Machine API not installed; skipped");
        }
    }
    Ok(found)
}

/// Whether the API server's `/readyz` says `ok` (readable by every authenticated user
/// through `system:public-info-viewer`). Where a cluster forbids it, there is nothing more
/// to ask: discovery's answer stands.
async fn api_server_ready(client: &Client) -> Result<(), String> {
    let request = axum::http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(format!("/readyz: {}", body.trim())),
        Err(kube::Error::Api(status)) if status.code == 401 || status.code == 403 => {
            tracing::debug!(
                code = status.code,
                "/readyz is forbidden; trusting discovery"
            );
            Ok(())
        }
        Err(error) => Err(format!("/readyz: {error}")),
    }
}
