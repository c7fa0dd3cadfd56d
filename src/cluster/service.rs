//! The Service `default/kubernetes`: the API server's in-cluster addresses.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::watch::{Cached, Concerns};
use crate::inventory::Inventory;

/// The ClusterIP(s) of the Service `default/kubernetes`: the API server's in-cluster
/// address, which no node may claim as its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesService {
    pub cluster_ips: Vec<IpAddr>,
}

impl KubernetesService {
    pub const NAMESPACE: &'static str = "default";
    pub const NAME: &'static str = "kubernetes";

    /// Read as `facts::service_cluster_ips` reads any Service.
    pub fn from_service(service: &Service) -> KubernetesService {
        KubernetesService {
            cluster_ips: crate::facts::service_cluster_ips(service),
        }
    }

    /// Records `ips`; a change concerns every pending serving CSR.
    fn set(inventory: &mut Inventory, ips: Vec<IpAddr>) -> Concerns {
        let before = inventory.kubernetes_service_ips().to_vec();
        inventory.set_kubernetes_service_ips(ips);
        if inventory.kubernetes_service_ips() == before.as_slice() {
            Concerns::Nodes(Vec::new())
        } else {
            Concerns::Everything
        }
    }
}

impl Cached for KubernetesService {
    const KIND: &'static str = "Service default/kubernetes";
    fn apply(self, inventory: &mut Inventory) -> Concerns {
        KubernetesService::set(inventory, self.cluster_ips)
    }
    fn delete(self, inventory: &mut Inventory) -> Concerns {
        KubernetesService::set(inventory, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;
    use crate::cluster::watch::{Cached, Concerns};
    use std::str::FromStr;

    /// The Service `default/kubernetes` with `spec`.
    fn service(spec: serde_json::Value) -> Service {
        let metadata = serde_json::json!({"name": "kubernetes", "namespace": "default"});
        serde_json::from_value(serde_json::json!({"metadata": metadata, "spec": spec})).unwrap()
    }

    #[test]
    fn the_kubernetes_service_ips_are_read_from_the_spec() {
        let dual = service(serde_json::json!({
            "clusterIP": "10.0.0.1",
            "clusterIPs": ["10.0.0.1", "fd00:0:0:0::1"]
        }));
        assert_eq!(
            KubernetesService::from_service(&dual).cluster_ips,
            vec![
                IpAddr::from_str("10.0.0.1").unwrap(),
                IpAddr::from_str("fd00::1").unwrap()
            ]
        );
        let single = service(serde_json::json!({"clusterIP": "172.30.0.1"}));
        assert_eq!(
            KubernetesService::from_service(&single).cluster_ips,
            vec![IpAddr::from_str("172.30.0.1").unwrap()]
        );
        let headless = service(serde_json::json!({"clusterIP": "None"}));
        assert!(
            KubernetesService::from_service(&headless)
                .cluster_ips
                .is_empty()
        );
    }

    #[test]
    fn a_change_of_the_kubernetes_service_concerns_every_pending_csr() {
        let mut inventory = Inventory::default();
        let ip = IpAddr::from_str("10.0.0.1").unwrap();
        let service = KubernetesService {
            cluster_ips: vec![ip],
        };
        assert_eq!(service.clone().apply(&mut inventory), Concerns::Everything);
        assert_eq!(inventory.kubernetes_service_ips(), &[ip]);
        assert_eq!(
            service.clone().apply(&mut inventory),
            Concerns::Nodes(Vec::new())
        );
        assert_eq!(service.delete(&mut inventory), Concerns::Everything);
        assert!(inventory.kubernetes_service_ips().is_empty());
    }
}
