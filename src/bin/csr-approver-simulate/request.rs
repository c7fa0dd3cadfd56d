//! What a simulated kubelet asks for: its addresses and the PKCS#10 requests it signs.

use std::net::Ipv4Addr;

/// Node `index`'s InternalIP: 10.200.0.1, 10.200.0.2, … (unique for 2^21 nodes).
pub fn node_ip(index: usize) -> Ipv4Addr {
    let i = index as u32 + 1;
    Ipv4Addr::new(10, 200 + ((i >> 16) & 0x1f) as u8, (i >> 8) as u8, i as u8)
}

/// A PEM `CERTIFICATE REQUEST` for `system:node:<node>` in organisation `org`, with these
/// SANs, signed by a new P-256 key (what a kubelet generates).
pub fn csr_pem(
    node: &str,
    dns: &[String],
    ips: &[Ipv4Addr],
    org: &str,
) -> Result<Vec<u8>, rcgen::Error> {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, org);
    dn.push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name = dn;
    for name in dns {
        params
            .subject_alt_names
            .push(rcgen::SanType::DnsName(name.clone().try_into()?));
    }
    for ip in ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress((*ip).into()));
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(params.serialize_request(&key)?.pem()?.into_bytes())
}
