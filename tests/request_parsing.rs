//! PKCS#10 parsing: every way a request can be malformed, forged or weak.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use builders::{
    ECDSA_WITH_SHA256, Key, MD5_WITH_RSA, OIW_SHA1_WITH_RSA, Request, SHA256_WITH_RSA,
    fixture_bytes, relabel_signature_algorithm,
};
use csr_approver::request::{KeyAlgorithm, MAX_REQUEST_BYTES, RequestError, parse_request};

fn tamper(pem_bytes: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let block = pem::parse(pem_bytes).expect("valid PEM");
    let mut der = block.contents().to_vec();
    edit(&mut der);
    pem::encode(&pem::Pem::new(block.tag(), der)).into_bytes()
}

#[test]
fn ecdsa_p256_request_parses_with_subject() {
    let parsed = parse_request(&Request::node("worker-1").pem()).expect("parses");
    assert_eq!(parsed.key, KeyAlgorithm::EcdsaP256);
    assert_eq!(parsed.common_names, ["system:node:worker-1"]);
    assert_eq!(parsed.organizations, ["system:nodes"]);
    assert!(!parsed.has_any_san());
}

#[test]
fn ecdsa_p384_request_parses() {
    let parsed = parse_request(&Request::node("w").key(Key::P384).pem()).expect("parses");
    assert_eq!(parsed.key, KeyAlgorithm::EcdsaP384);
}

#[test]
fn ed25519_request_parses() {
    let parsed = parse_request(&Request::node("w").key(Key::Ed25519).pem()).expect("parses");
    assert_eq!(parsed.key, KeyAlgorithm::Ed25519);
}

#[test]
fn rsa_2048_request_from_rcgen_parses_with_exact_size() {
    let parsed = parse_request(&Request::node("w").key(Key::Rsa2048).pem()).expect("parses");
    assert_eq!(parsed.key, KeyAlgorithm::Rsa { bits: 2048 });
}

#[test]
fn rsa_3072_request_reports_3072_bits() {
    let parsed = parse_request(&Request::node("w").key(Key::Rsa3072).pem()).expect("parses");
    assert_eq!(parsed.key, KeyAlgorithm::Rsa { bits: 3072 });
}

#[test]
fn rsa_2048_request_from_openssl_parses() {
    let parsed = parse_request(&fixture_bytes("requests/rsa2048-client.csr")).expect("parses");
    assert_eq!(parsed.key, KeyAlgorithm::Rsa { bits: 2048 });
    assert_eq!(parsed.common_names, ["system:node:worker-1"]);
}

#[test]
fn rsa_1024_is_a_weak_key_not_a_bad_signature() {
    let err = parse_request(&fixture_bytes("requests/rsa1024-client.csr")).unwrap_err();
    assert_eq!(
        err,
        RequestError::WeakKey {
            bits: 1024,
            min: 2048
        }
    );
}

#[test]
fn secp256k1_curve_is_unsupported() {
    let err = parse_request(&fixture_bytes("requests/secp256k1-client.csr")).unwrap_err();
    assert!(matches!(err, RequestError::UnsupportedKey(_)), "{err}");
}

#[test]
fn p521_curve_is_unsupported() {
    let err = parse_request(&fixture_bytes("requests/p521-client.csr")).unwrap_err();
    assert!(matches!(err, RequestError::UnsupportedKey(_)), "{err}");
}

#[test]
fn dsa_key_is_unsupported() {
    let err = parse_request(&fixture_bytes("requests/dsa-client.csr")).unwrap_err();
    assert!(matches!(err, RequestError::UnsupportedKey(_)), "{err}");
}

#[test]
fn sha1_rsa_signature_is_refused() {
    let err = parse_request(&fixture_bytes("requests/rsa2048-sha1-client.csr")).unwrap_err();
    assert!(matches!(err, RequestError::BadSignature(_)), "{err}");
}

#[test]
fn signature_algorithms_are_an_allow_list() {
    let sha1 = fixture_bytes("requests/rsa2048-sha1-client.csr");
    let rsa_sha256 = fixture_bytes("requests/rsa2048-client.csr");
    let ecdsa = Request::node("worker-1").pem();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        // The same valid SHA-1 signature under its OIW OID: verifiers still accept it.
        (
            "SHA-1 under OIW 1.3.14.3.2.29",
            relabel_signature_algorithm(&sha1, &OIW_SHA1_WITH_RSA),
            "1.3.14.3.2.29",
        ),
        (
            "MD5 with RSA",
            relabel_signature_algorithm(&rsa_sha256, &MD5_WITH_RSA),
            "1.2.840.113549.1.1.4",
        ),
        (
            "an ECDSA algorithm on an RSA key",
            relabel_signature_algorithm(&rsa_sha256, &ECDSA_WITH_SHA256),
            "not accepted for a RSA-2048 key",
        ),
        (
            "an RSA algorithm on an ECDSA key",
            relabel_signature_algorithm(&ecdsa, &SHA256_WITH_RSA),
            "not accepted for a ECDSA-P256 key",
        ),
    ];
    for (what, pem, expected) in cases {
        match parse_request(&pem) {
            Err(RequestError::BadSignature(message)) => {
                assert!(message.contains(expected), "{what}: {message}")
            }
            other => panic!("{what}: expected BadSignature, got {other:?}"),
        }
    }
    // The relabelling itself is sound: the original label still verifies.
    parse_request(&relabel_signature_algorithm(&rsa_sha256, &SHA256_WITH_RSA))
        .expect("re-encoding with the same algorithm keeps a valid request");
}

#[test]
fn only_canonical_der_is_accepted() {
    // Each keeps the signed part intact, so a lenient parser still verifies the signature.
    let pem = Request::node("worker-1").pem();
    let tag_class_flipped = tamper(&pem, |der| der[0] |= 0x80);
    let long_form_length = tamper(&pem, |der| {
        // 30 81 LL … → 30 82 00 LL …: the same length, not in its shortest form.
        assert_eq!(der[1], 0x81, "fixture's outer length is one long-form byte");
        der.splice(1..2, [0x82, 0x00]);
    });
    for (what, bytes) in [
        ("tag class flipped", tag_class_flipped),
        ("long-form length", long_form_length),
    ] {
        match parse_request(&bytes) {
            Err(RequestError::Malformed(message)) => {
                assert!(message.contains("not canonical DER"), "{what}: {message}")
            }
            other => panic!("{what}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn tampered_signature_fails_verification() {
    let forged = tamper(&Request::node("worker-1").pem(), |der| {
        let last = der.len() - 1;
        der[last] ^= 0x01;
    });
    let err = parse_request(&forged).unwrap_err();
    assert!(matches!(err, RequestError::BadSignature(_)), "{err}");
}

#[test]
fn tampered_subject_fails_verification() {
    let forged = tamper(&Request::node("worker-1").pem(), |der| {
        let at = der
            .windows(8)
            .position(|w| w == b"worker-1")
            .expect("CN bytes present");
        der[at + 7] = b'2';
    });
    let err = parse_request(&forged).unwrap_err();
    assert!(matches!(err, RequestError::BadSignature(_)), "{err}");
}

#[test]
fn rsa_tampered_signature_fails_verification() {
    let forged = tamper(&Request::node("worker-1").key(Key::Rsa2048).pem(), |der| {
        let last = der.len() - 1;
        der[last] ^= 0x80;
    });
    let err = parse_request(&forged).unwrap_err();
    assert!(matches!(err, RequestError::BadSignature(_)), "{err}");
}

#[test]
fn two_pem_blocks_are_refused() {
    let mut two = Request::node("worker-1").pem();
    two.extend(Request::node("worker-2").pem());
    assert_eq!(
        parse_request(&two).unwrap_err(),
        RequestError::MultipleBlocks
    );
}

#[test]
fn trailing_data_is_refused() {
    let mut pem = Request::node("worker-1").pem();
    pem.extend(b"\nsomething else\n");
    assert_eq!(parse_request(&pem).unwrap_err(), RequestError::TrailingData);
}

#[test]
fn leading_garbage_is_refused() {
    let mut pem = b"garbage\n".to_vec();
    pem.extend(Request::node("worker-1").pem());
    assert!(matches!(
        parse_request(&pem).unwrap_err(),
        RequestError::NotPem(_)
    ));
}

#[test]
fn surrounding_whitespace_is_accepted() {
    let mut pem = b"\n  \n".to_vec();
    pem.extend(Request::node("worker-1").pem());
    pem.extend(b"\n\n");
    assert!(parse_request(&pem).is_ok());
}

#[test]
fn garbage_is_not_pem() {
    let err = parse_request(b"this is not a certificate request").unwrap_err();
    assert!(matches!(err, RequestError::NotPem(_)), "{err}");
}

#[test]
fn empty_request_is_not_pem() {
    assert!(matches!(
        parse_request(b"").unwrap_err(),
        RequestError::NotPem(_)
    ));
}

#[test]
fn binary_request_is_not_pem() {
    assert!(matches!(
        parse_request(&[0xff, 0xfe, 0x00, 0x30]).unwrap_err(),
        RequestError::NotPem(_)
    ));
}

#[test]
fn oversized_request_is_refused_before_parsing() {
    let mut pem = Request::node("worker-1").pem();
    pem.resize(MAX_REQUEST_BYTES + 1, b'\n');
    assert_eq!(
        parse_request(&pem).unwrap_err(),
        RequestError::TooLarge {
            size: MAX_REQUEST_BYTES + 1
        }
    );
}

#[test]
fn certificate_label_is_refused() {
    let block = pem::parse(Request::node("w").pem()).expect("pem");
    let relabelled = pem::encode(&pem::Pem::new("CERTIFICATE", block.contents().to_vec()));
    assert_eq!(
        parse_request(relabelled.as_bytes()).unwrap_err(),
        RequestError::WrongLabel("CERTIFICATE".to_string())
    );
}

#[test]
fn garbage_der_in_a_valid_pem_block_is_malformed() {
    let bogus = pem::encode(&pem::Pem::new(
        "CERTIFICATE REQUEST",
        vec![0x30, 0x03, 0x02, 0x01, 0x05],
    ));
    assert!(matches!(
        parse_request(bogus.as_bytes()).unwrap_err(),
        RequestError::Malformed(_)
    ));
}

#[test]
fn der_with_trailing_bytes_is_malformed() {
    let padded = tamper(&Request::node("w").pem(), |der| der.extend([0, 0]));
    assert!(matches!(
        parse_request(&padded).unwrap_err(),
        RequestError::Malformed(_)
    ));
}

#[test]
fn sans_of_every_kind_are_extracted() {
    let request = Request::node("worker-1")
        .dns("worker-1.example.com")
        .ip("10.0.0.11")
        .ip("2001:db8:0:0:0:0:0:1")
        .email("admin@example.com")
        .uri("spiffe://cluster/ns/x");
    let parsed = parse_request(&request.pem()).expect("parses");
    assert_eq!(parsed.dns_names, ["worker-1.example.com"]);
    assert_eq!(
        parsed.ip_addresses,
        [
            "10.0.0.11".parse::<std::net::IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );
    assert_eq!(parsed.emails, ["admin@example.com"]);
    assert_eq!(parsed.uris, ["spiffe://cluster/ns/x"]);
}

#[test]
fn ipv4_mapped_ipv6_san_is_canonicalised_to_ipv4() {
    let parsed = parse_request(&Request::node("w").ip("::ffff:10.0.0.11").pem()).expect("parses");
    assert_eq!(
        parsed.ip_addresses,
        ["10.0.0.11".parse::<std::net::IpAddr>().unwrap()]
    );
}

#[test]
fn every_organization_and_common_name_is_reported() {
    let orgs = parse_request(&fixture_bytes("requests/two-orgs-client.csr")).expect("parses");
    assert_eq!(orgs.organizations, ["system:nodes", "system:masters"]);
    let cns = parse_request(&fixture_bytes("requests/two-cns-client.csr")).expect("parses");
    assert_eq!(
        cns.common_names,
        ["system:node:worker-1", "system:node:worker-2"]
    );
}

/// A decided CSR is read for its subject only (`decided_request_common_names`): the same
/// framing and DER rules as `parse_request`, no key or signature judgement.
#[test]
fn a_decided_request_is_read_for_its_subject_with_the_same_framing_rules() {
    use csr_approver::request::decided_request_common_names;
    let valid = Request::node("worker-1").pem();
    assert_eq!(
        decided_request_common_names(&valid).unwrap(),
        parse_request(&valid).unwrap().common_names
    );
    // What `parse_request` refuses for its key or signature still names its subject.
    let bad_signature = tamper(&valid, |der| {
        let last = der.len() - 1;
        der[last] ^= 0x01;
    });
    assert!(matches!(
        parse_request(&bad_signature),
        Err(RequestError::BadSignature(_))
    ));
    assert_eq!(
        decided_request_common_names(&bad_signature).unwrap(),
        ["system:node:worker-1"]
    );
    let weak = fixture_bytes("requests/rsa1024-client.csr");
    assert!(matches!(
        parse_request(&weak),
        Err(RequestError::WeakKey { .. })
    ));
    assert_eq!(decided_request_common_names(&weak).unwrap().len(), 1);
    // What is not one canonical request names nothing.
    let not_canonical = tamper(&valid, |der| der[0] |= 0x80);
    assert!(matches!(
        decided_request_common_names(&not_canonical),
        Err(RequestError::Malformed(m)) if m.contains("not canonical DER")
    ));
    let two_blocks = [valid.clone(), valid.clone()].concat();
    assert_eq!(
        decided_request_common_names(&two_blocks),
        Err(RequestError::MultipleBlocks)
    );
    assert!(decided_request_common_names(b"not pem").is_err());
}
