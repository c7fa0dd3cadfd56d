//! The value types policy fields are written in: durations, CIDRs, anchored patterns.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::vocabulary::canonical_ip;

/// A duration written as `90s`, `30m`, `2h`; never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim_start().starts_with('-') {
            return Err(de::Error::custom(format!("duration {text:?} is negative")));
        }
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!("invalid duration {text:?}: {e} (use e.g. 30m, 2h)"))
            })
    }
}

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical_ip(ip))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let net = IpNet::from_str(text.trim()).map_err(|_| {
            de::Error::custom(format!(
                "invalid CIDR {text:?} (expected e.g. 10.0.0.0/8 or fd00::/8)"
            ))
        })?;
        if net.trunc() != net {
            return Err(de::Error::custom(format!(
                "CIDR {text:?} has host bits set; did you mean {}?",
                net.trunc()
            )));
        }
        Ok(Cidr(net))
    }
}

/// A regular expression that matches whole values only. It must be written anchored
/// (`^…$`) so that its meaning is visible in the policy, and it is compiled as `^(?:…)$`
/// whatever it contains, so that `^a|b$` means "a or b", not "starts with a or ends with b".
#[derive(Debug, Clone)]
pub struct AnchoredRegex {
    written: String,
    compiled: Regex,
}

impl AnchoredRegex {
    pub fn new(written: &str) -> Result<AnchoredRegex, String> {
        if !written.starts_with('^') || !written.ends_with('$') || written.ends_with("\\$") {
            return Err(format!(
                "pattern {written:?} must be anchored: start with ^ and end with $"
            ));
        }
        let full = format!("^(?:{written})$");
        Regex::new(&full)
            .map(|compiled| AnchoredRegex {
                written: written.to_string(),
                compiled,
            })
            .map_err(|e| format!("invalid regular expression {written:?}: {e}"))
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.compiled.is_match(value)
    }

    /// The pattern as the policy wrote it.
    pub fn as_written(&self) -> &str {
        &self.written
    }

    /// The pattern as it is matched.
    pub fn as_compiled(&self) -> &str {
        self.compiled.as_str()
    }
}

impl Serialize for AnchoredRegex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for AnchoredRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AnchoredRegex::new(&text).map_err(de::Error::custom)
    }
}
