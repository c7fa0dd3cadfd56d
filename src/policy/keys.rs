//! `keys`: the key types and sizes a kubelet request may use.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::request::{KeyAlgorithm, RSA_MIN_VERIFIABLE_BITS};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KeyPolicy {
    #[serde(rename = "minRSABits", deserialize_with = "min_rsa_bits")]
    pub min_rsa_bits: usize,
    /// Key types accepted: RSA, ECDSA-P256, ECDSA-P384, Ed25519.
    pub types: Vec<KeyType>,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            min_rsa_bits: RSA_MIN_VERIFIABLE_BITS,
            types: vec![
                KeyType::Rsa,
                KeyType::EcdsaP256,
                KeyType::EcdsaP384,
                KeyType::Ed25519,
            ],
        }
    }
}

fn min_rsa_bits<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let bits = usize::deserialize(d)?;
    if bits < RSA_MIN_VERIFIABLE_BITS {
        return Err(de::Error::custom(format!(
            "{bits} is below {RSA_MIN_VERIFIABLE_BITS}, the smallest RSA key whose signature can be verified"
        )));
    }
    Ok(bits)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum KeyType {
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
    Ed25519,
}

impl KeyType {
    pub fn of(key: KeyAlgorithm) -> Self {
        match key {
            KeyAlgorithm::Rsa { .. } => KeyType::Rsa,
            KeyAlgorithm::EcdsaP256 => KeyType::EcdsaP256,
            KeyAlgorithm::EcdsaP384 => KeyType::EcdsaP384,
            KeyAlgorithm::Ed25519 => KeyType::Ed25519,
        }
    }
}
