//! PKCS#10 parsing: from a CSR object's `spec.request` (PEM bytes) to the facts the decision
//! needs. Pure: no I/O, no clock.

use std::fmt;
use std::io::Cursor;
use std::net::IpAddr;

use x509_cert::der::Decode;
use x509_cert::der::asn1::BitString;
use x509_cert::request::CertReq;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::{ExtendedKeyUsage, GeneralName, ParsedExtension};
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::vocabulary::canonical_ip;

/// Kubelet CSRs are a few hundred bytes; anything this large is not one.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The PEM label of a PKCS#10 request.
const CSR_PEM_LABEL: &str = "CERTIFICATE REQUEST";

/// ring, which verifies the signature, refuses smaller RSA moduli; the policy can only
/// raise this floor.
pub const RSA_MIN_VERIFIABLE_BITS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request is {size} bytes, over the {MAX_REQUEST_BYTES}-byte limit")]
    TooLarge { size: usize },
    #[error("request is not PEM: {0}")]
    NotPem(String),
    #[error("request holds more than one PEM block; exactly one CERTIFICATE REQUEST is allowed")]
    MultipleBlocks,
    #[error("request has data after its PEM block")]
    TrailingData,
    #[error("PEM block is labelled {0:?}, expected \"CERTIFICATE REQUEST\"")]
    WrongLabel(String),
    #[error("request is not a valid PKCS#10 structure: {0}")]
    Malformed(String),
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    #[error("weak key: RSA {bits} bits is below the minimum of {min}")]
    WeakKey { bits: usize, min: usize },
    #[error("signature does not verify against the request's own public key: {0}")]
    BadSignature(String),
}

/// The public key's algorithm as policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Rsa { bits: usize },
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA-P256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ECDSA-P384"),
            KeyAlgorithm::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// Everything the decision reads from a PKCS#10 request whose self-signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    pub common_names: Vec<String>,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    /// SAN kinds a kubelet never asks for (otherName, directoryName, …), described.
    pub other_sans: Vec<String>,
    /// Every requested extension but subjectAltName, in the order requested (duplicates
    /// and all): what the decision holds against its allow-list.
    pub extensions: Vec<RequestedExtension>,
    pub key: KeyAlgorithm,
}

/// A requested extension other than subjectAltName, named as `spec.usages` names key
/// usages so the decision can compare the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedExtension {
    /// keyUsage: the bits set, as `spec.usages` names them (`digital signature`,
    /// `key encipherment`, `cert sign`, …; `bit N` past the nine RFC 5280 defines).
    KeyUsage(Vec<String>),
    /// extendedKeyUsage: the purposes, as `spec.usages` names them (`server auth`,
    /// `client auth`, `any`, …), others by OID.
    ExtendedKeyUsage(Vec<String>),
    /// Anything else (basicConstraints, nameConstraints, an unknown OID): its name and
    /// OID, and whether it is marked critical.
    Other { name: String, critical: bool },
}

impl fmt::Display for RequestedExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestedExtension::KeyUsage(bits) => write!(f, "keyUsage [{}]", bits.join(", ")),
            RequestedExtension::ExtendedKeyUsage(purposes) => {
                write!(f, "extendedKeyUsage [{}]", purposes.join(", "))
            }
            RequestedExtension::Other { name, critical } => {
                f.write_str(name)?;
                if *critical {
                    f.write_str(" (critical)")?;
                }
                Ok(())
            }
        }
    }
}

/// keyUsage bits in RFC 5280 §4.2.1.3 order, as Kubernetes' `spec.usages` spells them.
const KEY_USAGE_BITS: [&str; 9] = [
    "digital signature",
    "content commitment",
    "key encipherment",
    "data encipherment",
    "key agreement",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
];

impl ParsedRequest {
    pub fn has_any_san(&self) -> bool {
        !(self.dns_names.is_empty()
            && self.ip_addresses.is_empty()
            && self.emails.is_empty()
            && self.uris.is_empty()
            && self.other_sans.is_empty())
    }
}

/// Parses and verifies a PEM-encoded PKCS#10 request, as found in `spec.request`.
pub fn parse_request(pem: &[u8]) -> Result<ParsedRequest, RequestError> {
    let der = single_pem_block(pem)?;
    let csr = decode(&der)?;
    let info = &csr.certification_request_info;
    let key = key_algorithm(&csr)?;
    // Checked before verifying so a small key is reported as weak, not as a bad signature.
    if let KeyAlgorithm::Rsa { bits } = key
        && bits < RSA_MIN_VERIFIABLE_BITS
    {
        return Err(RequestError::WeakKey {
            bits,
            min: RSA_MIN_VERIFIABLE_BITS,
        });
    }
    check_signature_algorithm(&csr.signature_algorithm.algorithm, key)?;
    csr.verify_signature()
        .map_err(|e| RequestError::BadSignature(e.to_string()))?;

    let mut parsed = ParsedRequest {
        common_names: attribute_strings(info.subject.iter_common_name(), "CN")?,
        organizations: attribute_strings(info.subject.iter_organization(), "O")?,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        emails: Vec::new(),
        uris: Vec::new(),
        other_sans: Vec::new(),
        extensions: Vec::new(),
        key,
    };
    // Every extensionRequest attribute and every extension in it counts: a second SAN
    // extension must not be able to hide names from the checks, nor a second keyUsage
    // bits.
    for attribute in info.iter_attributes() {
        let ParsedCriAttribute::ExtensionRequest(request) = attribute.parsed_attribute() else {
            continue;
        };
        for extension in &request.extensions {
            match extension.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        collect_san(name, &mut parsed)?;
                    }
                }
                ParsedExtension::ParseError { error } => {
                    return Err(RequestError::Malformed(format!(
                        "extension {}: {error}",
                        extension.oid
                    )));
                }
                ParsedExtension::KeyUsage(_) => {
                    let bits = key_usage_bits(extension.value)?;
                    parsed.extensions.push(RequestedExtension::KeyUsage(bits));
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    parsed
                        .extensions
                        .push(RequestedExtension::ExtendedKeyUsage(eku_purposes(eku)));
                }
                // Every other extension, known to x509-parser or not, is recorded: the
                // decision allows none of them.
                _ => parsed.extensions.push(RequestedExtension::Other {
                    name: extension_name(&extension.oid),
                    critical: extension.critical,
                }),
            }
        }
    }
    Ok(parsed)
}

/// The subject common names of a request that is **already decided**, read as
/// [`parse_request`] reads them (one PEM block, canonical DER) but without judging the key
/// or verifying the self-signature.
///
/// A decided CSR only counts against its node name (one identity per host generation, one
/// recovery per window, the new-node caps): what an approval minted is the name the signer
/// copies from the subject, whoever signed the request, so verifying it adds nothing there
/// — and counting a name can only hold a later request back, never let one through. It
/// spares the start-up of a cluster holding thousands of decided CSRs a signature
/// verification each. Nothing read here reaches `decide`: it returns names, not a
/// [`ParsedRequest`].
pub fn decided_request_common_names(pem: &[u8]) -> Result<Vec<String>, RequestError> {
    let der = single_pem_block(pem)?;
    let csr = decode(&der)?;
    attribute_strings(
        csr.certification_request_info.subject.iter_common_name(),
        "CN",
    )
}

/// The DER of one request, read strictly. x509-parser reads leniently (a request whose
/// outer tag has its class bits flipped still parses, and its signature still verifies):
/// the signer, or any other reader, could see a different structure than we judged. Only
/// canonical DER is accepted, checked by a strict decoder first.
fn decode(der: &[u8]) -> Result<X509CertificationRequest<'_>, RequestError> {
    CertReq::from_der(der)
        .map_err(|e| RequestError::Malformed(format!("not canonical DER: {e}")))?;
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| RequestError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(RequestError::Malformed(format!(
            "{} bytes after the DER structure",
            rest.len()
        )));
    }
    Ok(csr)
}

/// An allow-list, not a deny-list: the algorithms kubelets and Go's crypto/x509 produce,
/// each only with the key type it belongs to. Anything else — SHA-1 under any of its OIDs
/// (PKCS#1, OIW 1.3.14.3.2.29, ECDSA), MD5, DSA — is refused before verification, because
/// verification libraries keep legacy algorithms around "for compatibility". RSA-PSS is
/// listed; its hash (SHA-256/384/512 only) is checked by the verifier from its parameters.
fn check_signature_algorithm(algorithm: &Oid<'_>, key: KeyAlgorithm) -> Result<(), RequestError> {
    let allowed: &[Oid<'static>] = match key {
        KeyAlgorithm::Rsa { .. } => &[
            OID_PKCS1_SHA256WITHRSA,
            OID_PKCS1_SHA384WITHRSA,
            OID_PKCS1_SHA512WITHRSA,
            OID_PKCS1_RSASSAPSS,
        ],
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
            &[OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384]
        }
        KeyAlgorithm::Ed25519 => &[OID_SIG_ED25519],
    };
    if allowed.contains(algorithm) {
        Ok(())
    } else {
        Err(RequestError::BadSignature(format!(
            "signature algorithm {algorithm} is not accepted for a {key} key (allowed: RSA PKCS#1 v1.5 or PSS with SHA-256/384/512, ECDSA with SHA-256/384, Ed25519)"
        )))
    }
}

fn single_pem_block(pem: &[u8]) -> Result<Vec<u8>, RequestError> {
    if pem.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge { size: pem.len() });
    }
    let text =
        std::str::from_utf8(pem).map_err(|_| RequestError::NotPem("not UTF-8 text".to_string()))?;
    let text = text.trim_start();
    if !text.starts_with("-----BEGIN ") {
        return Err(RequestError::NotPem(
            "does not start with a -----BEGIN line".to_string(),
        ));
    }
    let (block, consumed) =
        Pem::read(Cursor::new(text.as_bytes())).map_err(|e| RequestError::NotPem(e.to_string()))?;
    let rest = text.get(consumed..).unwrap_or_default();
    if rest.contains("-----BEGIN") {
        return Err(RequestError::MultipleBlocks);
    }
    if !rest.trim().is_empty() {
        return Err(RequestError::TrailingData);
    }
    if block.label != CSR_PEM_LABEL {
        return Err(RequestError::WrongLabel(block.label));
    }
    Ok(block.contents)
}

fn key_algorithm(csr: &X509CertificationRequest<'_>) -> Result<KeyAlgorithm, RequestError> {
    let spki = &csr.certification_request_info.subject_pki;
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(RequestError::Malformed(
                "RSA public key does not parse".to_string(),
            ));
        };
        let modulus = rsa.modulus;
        let significant = modulus
            .iter()
            .position(|b| *b != 0)
            .map_or(0, |i| modulus.len() - i);
        let bits = match modulus.get(modulus.len() - significant) {
            Some(first) => significant * 8 - first.leading_zeros() as usize,
            None => 0,
        };
        return Ok(KeyAlgorithm::Rsa { bits });
    }
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok(KeyAlgorithm::EcdsaP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(KeyAlgorithm::EcdsaP384),
            Some(c) => Err(RequestError::UnsupportedKey(format!("ECDSA curve {c}"))),
            None => Err(RequestError::UnsupportedKey(
                "ECDSA key without a named curve".to_string(),
            )),
        };
    }
    if *oid == OID_SIG_ED25519 {
        return Ok(KeyAlgorithm::Ed25519);
    }
    Err(RequestError::UnsupportedKey(format!("algorithm {oid}")))
}

fn attribute_strings<'a>(
    values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
    what: &str,
) -> Result<Vec<String>, RequestError> {
    values
        .map(|v| {
            v.as_str().map(str::to_string).map_err(|e| {
                RequestError::Malformed(format!("subject {what} is not a string: {e}"))
            })
        })
        .collect()
}

/// The keyUsage bits set, read from the extension's DER BIT STRING itself: x509-parser
/// folds the bits into a `u16` and drops any past the sixteenth, which must not hide.
fn key_usage_bits(value: &[u8]) -> Result<Vec<String>, RequestError> {
    let bits = BitString::from_der(value)
        .map_err(|e| RequestError::Malformed(format!("keyUsage is not a DER BIT STRING: {e}")))?;
    Ok(bits
        .bits()
        .enumerate()
        .filter(|(_, set)| *set)
        .map(|(i, _)| match KEY_USAGE_BITS.get(i) {
            Some(name) => (*name).to_string(),
            None => format!("bit {i}"),
        })
        .collect())
}

/// extendedKeyUsage purposes as `spec.usages` spells them; unknown ones by OID.
fn eku_purposes(eku: &ExtendedKeyUsage<'_>) -> Vec<String> {
    let named = [
        (eku.any, "any"),
        (eku.server_auth, "server auth"),
        (eku.client_auth, "client auth"),
        (eku.code_signing, "code signing"),
        (eku.email_protection, "email protection"),
        (eku.time_stamping, "timestamping"),
        (eku.ocsp_signing, "ocsp signing"),
    ];
    named
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| (*name).to_string())
        .chain(eku.other.iter().map(Oid::to_id_string))
        .collect()
}

/// `basicConstraints (2.5.29.19)`, or the OID alone when no registry knows it.
fn extension_name(oid: &Oid<'_>) -> String {
    match oid2sn(oid, oid_registry()) {
        Ok(name) => format!("{name} ({})", oid.to_id_string()),
        Err(_) => oid.to_id_string(),
    }
}

fn collect_san(name: &GeneralName<'_>, parsed: &mut ParsedRequest) -> Result<(), RequestError> {
    match name {
        GeneralName::DNSName(dns) => parsed.dns_names.push((*dns).to_string()),
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                _ => None,
            }
            .ok_or_else(|| RequestError::Malformed(format!("IP SAN of {} bytes", bytes.len())))?;
            parsed.ip_addresses.push(canonical_ip(ip));
        }
        GeneralName::RFC822Name(email) => parsed.emails.push((*email).to_string()),
        GeneralName::URI(uri) => parsed.uris.push((*uri).to_string()),
        GeneralName::OtherName(oid, _) => parsed.other_sans.push(format!("otherName {oid}")),
        GeneralName::DirectoryName(dn) => parsed.other_sans.push(format!("directoryName {dn}")),
        GeneralName::RegisteredID(oid) => parsed.other_sans.push(format!("registeredID {oid}")),
        GeneralName::X400Address(_) => parsed.other_sans.push("x400Address".to_string()),
        GeneralName::EDIPartyName(_) => parsed.other_sans.push("ediPartyName".to_string()),
        GeneralName::Invalid(tag, _) => {
            return Err(RequestError::Malformed(format!(
                "invalid SAN with tag {tag}"
            )));
        }
    }
    Ok(())
}
