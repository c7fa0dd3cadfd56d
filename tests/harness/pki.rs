//! Throw-away certificates for one control plane, written as PEM files into its directory.

use std::fs;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// File names inside the control plane directory.
pub const CA_CERT: &str = "ca.crt";
/// The CA's private key: kube-controller-manager signs kubelet certificates with it.
pub const CA_KEY: &str = "ca.key";
pub const SERVING_CERT: &str = "apiserver.crt";
pub const SERVING_KEY: &str = "apiserver.key";
pub const ADMIN_CERT: &str = "admin.crt";
pub const ADMIN_KEY: &str = "admin.key";
pub const SA_KEY: &str = "sa.key";
pub const SA_PUB: &str = "sa.pub";

pub struct Pki {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("rcgen: {what}: {e}")
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<(), String> {
    let path = dir.join(name);
    fs::write(&path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// CA (certificate and key), kube-apiserver serving certificate (127.0.0.1, localhost), admin client certificate
/// (`O=system:masters, CN=admin`) and the service-account token signing key pair; all ECDSA
/// P-256.
pub fn generate(dir: &Path) -> Result<Pki, String> {
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = dn("csr-approver-test-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(err("ca key"))?;
    write(dir, CA_KEY, &ca_key.serialize_pem())?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err("ca cert"))?;
    write(dir, CA_CERT, &ca.pem())?;

    let leaf = |name: &str, params: CertificateParams, cert: &str, key: &str| {
        let key_pair = KeyPair::generate().map_err(err(name))?;
        let signed = params.signed_by(&key_pair, &ca).map_err(err(name))?;
        write(dir, cert, &signed.pem())?;
        write(dir, key, &key_pair.serialize_pem())
    };

    let mut serving = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .map_err(err("serving params"))?;
    serving.distinguished_name = dn("kube-apiserver", None);
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf("serving", serving, SERVING_CERT, SERVING_KEY)?;

    let mut admin = CertificateParams::default();
    admin.distinguished_name = dn("admin", Some("system:masters"));
    admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf("admin", admin, ADMIN_CERT, ADMIN_KEY)?;

    let sa = KeyPair::generate().map_err(err("service-account key"))?;
    write(dir, SA_KEY, &sa.serialize_pem())?;
    write(dir, SA_PUB, &sa.public_key_pem())?;

    Ok(Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
    })
}

/// A PKCS#10 request (PEM) as a kubelet makes for its client certificate:
/// `O=system:nodes, CN=system:node:<node>`, ECDSA P-256, no SANs.
pub fn kubelet_client_csr_pem(node: &str) -> String {
    let key = KeyPair::generate().expect("generate P-256 key");
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&format!("system:node:{node}"), Some("system:nodes"));
    params
        .serialize_request(&key)
        .expect("serialize CSR")
        .pem()
        .expect("CSR to PEM")
}
