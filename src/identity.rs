//! The durable record of the node identities csr-approver mints: one cluster-scoped
//! `NodeIdentity` (`csr-approver.io/v1alpha1`) per node, named after it, written only by
//! csr-approver (no node, no bootstrapper has RBAC on it).
//!
//! Why a resource of our own: kube-controller-manager's CSR cleaner deletes an approved
//! CSR one hour after approval, so the CSR objects cannot remember that a host generation
//! already has its identity, or that a node already recovered in this window. The record
//! is written before the approval (a crash in between leaves a record of an identity
//! never approved: the safe side), loaded before the first decision, and read by the
//! duplicate and recovery rules (`decision::client`, `decision::recovery`). One object per
//! node keeps each far below etcd's object size limit at any cluster size.
//!
//! This module is data only: the wire form and how a record grows. The watch lives in
//! `cluster`, the write in `approval::identity`.

use std::borrow::Cow;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::ClusterResourceScope;
use serde::{Deserialize, Serialize};

use crate::vocabulary::Signer;

pub const GROUP: &str = "csr-approver.io";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "csr-approver.io/v1alpha1";
pub const KIND: &str = "NodeIdentity";
pub const PLURAL: &str = "nodeidentities";

/// How many minted identities a record keeps, newest last. Each is a join, a new host
/// generation or a recovery (at most one per `client.recovery.window`), so this covers
/// years of a node's life while bounding the object's size.
pub const MINTED_KEPT: usize = 16;

/// One node's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeIdentity {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: NodeIdentitySpec,
}

fn api_version() -> String {
    API_VERSION.to_string()
}

fn kind() -> String {
    KIND.to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeIdentitySpec {
    /// The node, as in `system:node:<node>` (also the object's name).
    pub node: String,
    /// The host generation the newest identity was minted for.
    pub host_generation: HostGeneration,
    /// The identities minted for this node, oldest first, at most [`MINTED_KEPT`].
    #[serde(default)]
    pub minted: Vec<Minted>,
    /// The newest client certificate issued on one of `minted`, once the signer issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<IssuedCertificate>,
    /// The newest serving certificate issued for the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_certificate: Option<IssuedCertificate>,
}

/// A host generation: one Machine (one creation of it), one inventory entry, and every
/// name its trusted source gives the host. An identity belongs to it, under any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostGeneration {
    /// Stable across the generation's life and unique to it: a Machine's API group,
    /// namespace, name and creationTimestamp (a Machine re-created under its name is a
    /// new generation); an inventory entry's `name`, or its `namePattern` with the node.
    pub key: String,
    /// For people: which source vouched.
    pub source: String,
    /// Every name the source gives the host, the node's included.
    #[serde(default)]
    pub names: Vec<String>,
}

/// One identity minted: the approval csr-approver wrote (or was about to write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Minted {
    pub csr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_uid: Option<String>,
    /// `NewNodeMachine`, `NewNodeInventory` or `NodeRecovery`.
    pub reason: String,
    pub requester: String,
    /// When csr-approver decided to approve it (written before the approval).
    pub at: Timestamp,
    /// The key of the host generation it was minted for.
    pub host_generation: String,
}

/// A certificate the signer issued on a minted identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCertificate {
    pub csr: String,
    /// Hexadecimal, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

impl Minted {
    /// Whether this entry records CSR `name` (with `uid`, when both are known): a record
    /// written just before a crash, for the very CSR now being decided again.
    pub fn is_for(&self, name: &str, uid: Option<&str>) -> bool {
        self.csr == name
            && match (self.csr_uid.as_deref(), uid) {
                (Some(recorded), Some(uid)) => recorded == uid,
                _ => true,
            }
    }
}

/// A certificate the signer issued on a kubelet CSR for the node, as its CSR shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub signer: Signer,
    pub certificate: IssuedCertificate,
}

/// Why an issued certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuedError {
    #[error("status.certificate holds no PEM CERTIFICATE block")]
    NoCertificate,
    #[error("status.certificate does not parse: {0}")]
    Unreadable(String),
}

/// Reads the leaf (first) certificate of a CSR's `status.certificate` PEM chain.
pub fn read_issued(csr: &str, pem_chain: &[u8]) -> Result<IssuedCertificate, IssuedError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem_chain).map_err(|_| IssuedError::NoCertificate)?;
    if pem.label != "CERTIFICATE" {
        return Err(IssuedError::NoCertificate);
    }
    let certificate = pem
        .parse_x509()
        .map_err(|e| IssuedError::Unreadable(e.to_string()))?;
    let time = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| IssuedError::Unreadable(e.to_string()))
    };
    Ok(IssuedCertificate {
        csr: csr.to_string(),
        serial: certificate
            .raw_serial_as_string()
            .replace(':', "")
            .to_uppercase(),
        not_before: time(certificate.validity().not_before)?,
        not_after: time(certificate.validity().not_after)?,
    })
}

impl NodeIdentity {
    /// This record with `issued` as the node's newest certificate of its kind, or `None`
    /// when it holds that one or a later one already (events come again on every re-list).
    pub fn with_issued(&self, issued: &Issued) -> Option<NodeIdentity> {
        let slot = |spec: &NodeIdentitySpec| match issued.signer {
            Signer::Client => spec.client_certificate.clone(),
            Signer::Serving => spec.serving_certificate.clone(),
        };
        if slot(&self.spec).is_some_and(|known| {
            known.not_after >= issued.certificate.not_after
                || known.serial == issued.certificate.serial
        }) {
            return None;
        }
        let mut next = self.clone();
        next.metadata.managed_fields = None;
        let certificate = Some(issued.certificate.clone());
        match issued.signer {
            Signer::Client => next.spec.client_certificate = certificate,
            Signer::Serving => next.spec.serving_certificate = certificate,
        }
        Some(next)
    }

    /// A record holding its first identity.
    pub fn first(generation: HostGeneration, minted: Minted, node: &str) -> NodeIdentity {
        NodeIdentity {
            api_version: api_version(),
            kind: kind(),
            metadata: ObjectMeta {
                name: Some(node.to_string()),
                ..ObjectMeta::default()
            },
            spec: NodeIdentitySpec {
                node: node.to_string(),
                host_generation: generation,
                minted: vec![minted],
                client_certificate: None,
                serving_certificate: None,
            },
        }
    }

    /// This record with one more identity (the oldest dropped beyond [`MINTED_KEPT`]), or
    /// `None` when it already holds that CSR's entry.
    pub fn with_minted(&self, generation: HostGeneration, minted: Minted) -> Option<NodeIdentity> {
        if self
            .spec
            .minted
            .iter()
            .any(|m| m.is_for(&minted.csr, minted.csr_uid.as_deref()))
        {
            return None;
        }
        let mut next = self.clone();
        next.metadata.managed_fields = None;
        next.spec.host_generation = generation;
        next.spec.minted.push(minted);
        let excess = next.spec.minted.len().saturating_sub(MINTED_KEPT);
        next.spec.minted.drain(..excess);
        Some(next)
    }

    /// This record without the entry for CSR `name`/`uid` (an approval that was never
    /// written), or `None` when it holds no such entry.
    pub fn without(&self, name: &str, uid: Option<&str>) -> Option<NodeIdentity> {
        if !self.spec.minted.iter().any(|m| m.is_for(name, uid)) {
            return None;
        }
        let mut next = self.clone();
        next.metadata.managed_fields = None;
        next.spec.minted.retain(|m| !m.is_for(name, uid));
        Some(next)
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or(&self.spec.node)
    }
}

impl kube::Resource for NodeIdentity {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(KIND)
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(GROUP)
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(VERSION)
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(PLURAL)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(key: &str) -> HostGeneration {
        HostGeneration {
            key: key.to_string(),
            source: format!("source of {key}"),
            names: vec!["w-1".to_string()],
        }
    }

    fn minted(csr: &str, uid: Option<&str>) -> Minted {
        Minted {
            csr: csr.to_string(),
            csr_uid: uid.map(str::to_string),
            reason: "NewNodeMachine".to_string(),
            requester: "bootstrapper".to_string(),
            at: Timestamp::UNIX_EPOCH,
            host_generation: "g".to_string(),
        }
    }

    #[test]
    fn a_record_keeps_each_csr_once_and_the_newest_identities() {
        let mut record = NodeIdentity::first(generation("g"), minted("csr-0", Some("u0")), "w-1");
        assert_eq!(
            record.with_minted(generation("g"), minted("csr-0", Some("u0"))),
            None,
            "the same CSR again adds nothing"
        );
        for n in 1..(MINTED_KEPT + 3) {
            record = record
                .with_minted(generation("g2"), minted(&format!("csr-{n}"), None))
                .unwrap_or_else(|| panic!("csr-{n} is new"));
        }
        assert_eq!(record.spec.minted.len(), MINTED_KEPT);
        assert_eq!(record.spec.minted[0].csr, "csr-3", "the oldest went first");
        assert_eq!(record.spec.host_generation.key, "g2");
        let without = record
            .without("csr-5", None)
            .unwrap_or_else(|| panic!("csr-5 is recorded"));
        assert_eq!(without.spec.minted.len(), MINTED_KEPT - 1);
        assert_eq!(without.without("csr-5", None), None);
    }

    fn issued(signer: Signer, serial: &str, not_after: i64) -> Issued {
        Issued {
            signer,
            certificate: IssuedCertificate {
                csr: format!("csr-{serial}"),
                serial: serial.to_string(),
                not_before: Timestamp::UNIX_EPOCH,
                not_after: Timestamp::from_second(not_after).unwrap_or(Timestamp::UNIX_EPOCH),
            },
        }
    }

    #[test]
    fn a_record_keeps_the_newest_certificate_of_each_kind() {
        let record = NodeIdentity::first(generation("g"), minted("csr-0", None), "w-1");
        let Some(with_client) = record.with_issued(&issued(Signer::Client, "0A", 1000)) else {
            panic!("the first client certificate is recorded");
        };
        assert_eq!(
            with_client
                .spec
                .client_certificate
                .as_ref()
                .map(|c| c.serial.as_str()),
            Some("0A")
        );
        assert_eq!(with_client.spec.serving_certificate, None);
        assert_eq!(
            with_client.with_issued(&issued(Signer::Client, "0A", 1000)),
            None,
            "seen again on a re-list"
        );
        assert_eq!(
            with_client.with_issued(&issued(Signer::Client, "09", 900)),
            None,
            "an older certificate"
        );
        let renewed = with_client
            .with_issued(&issued(Signer::Client, "0B", 2000))
            .unwrap_or_else(|| panic!("a renewal is newer"));
        assert_eq!(
            renewed.spec.client_certificate.map(|c| c.serial),
            Some("0B".to_string())
        );
        let serving = with_client
            .with_issued(&issued(Signer::Serving, "0C", 500))
            .unwrap_or_else(|| panic!("serving is its own kind"));
        assert_eq!(
            serving.spec.serving_certificate.map(|c| c.serial),
            Some("0C".to_string())
        );
    }

    #[test]
    fn an_issued_certificate_is_read_from_the_leaf_of_the_chain() {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.serial_number = Some(rcgen::SerialNumber::from(vec![0x1f, 0xa2]));
        params.not_before = rcgen::date_time_ymd(2026, 12, 1);
        params.not_after = rcgen::date_time_ymd(2027, 12, 1);
        let leaf = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        let chain = format!("{}{}", leaf.pem(), leaf.pem());
        let read = read_issued("csr-a", chain.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.serial, "1FA2");
        assert_eq!(read.csr, "csr-a");
        assert_eq!(read.not_after.to_string(), "2027-12-01T00:00:00Z");
        assert_eq!(read.not_before.to_string(), "2026-12-01T00:00:00Z");
        assert_eq!(
            read_issued("csr-a", b"junk"),
            Err(IssuedError::NoCertificate)
        );
    }

    #[test]
    fn a_recorded_uid_must_match_when_both_are_known() {
        let entry = minted("csr-1", Some("uid-1"));
        assert!(entry.is_for("csr-1", Some("uid-1")));
        assert!(entry.is_for("csr-1", None));
        assert!(!entry.is_for("csr-1", Some("uid-2")), "a re-created CSR");
        assert!(!entry.is_for("csr-2", Some("uid-1")));
    }

    #[test]
    fn the_wire_form_round_trips_with_kubernetes_field_names() {
        let record = NodeIdentity::first(generation("g"), minted("csr-1", Some("u")), "w-1");
        let json = serde_json::to_value(&record).unwrap_or_default();
        assert_eq!(json["apiVersion"], API_VERSION);
        assert_eq!(json["kind"], KIND);
        assert_eq!(json["metadata"]["name"], "w-1");
        assert_eq!(json["spec"]["hostGeneration"]["key"], "g");
        assert_eq!(json["spec"]["minted"][0]["csrUID"], serde_json::Value::Null);
        assert_eq!(json["spec"]["minted"][0]["csrUid"], "u");
        let back: NodeIdentity = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, record);
    }
}
