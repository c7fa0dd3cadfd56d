//! Why a CSR got its verdict. Each reason is written once below, with its class; its name
//! (`as_str()`) is stable: a metric label, an Event reason and part of the `check` output
//! contract.

use std::fmt;

/// What kind of answer a reason gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonClass {
    Approval,
    /// Not ours to decide: ignored.
    NotOurs,
    /// May become valid when the cluster changes: wait.
    Transient,
    /// Forged or invalid as submitted, whatever the cluster holds: no evidence and no admin
    /// can make it a valid kubelet request (a bad signature, a reserved name, another
    /// node's identity asked for by a node). Denied with `deny: true`, else left pending.
    Definitive,
    /// Unproven: no evidence the policy trusts vouches for it, yet an admin who checked the
    /// host may rightly approve it by hand (a node recovering after its client certificate
    /// expired, a late boot, a requester the policy does not list, an address no status
    /// shows). Never auto-denied, so that no denial races the admin; left pending with a
    /// Warning Event that says what to check and the command to approve it.
    ForAnAdmin,
}

impl ReasonClass {
    /// As `check -o json` names it (PascalCase, like reasons).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonClass::Approval => "Approval",
            ReasonClass::NotOurs => "NotOurs",
            ReasonClass::Transient => "Transient",
            ReasonClass::Definitive => "Definitive",
            ReasonClass::ForAnAdmin => "ForAnAdmin",
        }
    }
}

/// Declares `Reason` from one list of `Name => Class`, so that a reason's name, class and
/// documentation cannot drift apart.
macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $name:ident => $class:ident, )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[doc = $doc])* $name, )*
        }

        impl Reason {
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Reason::$name => stringify!($name), )*
                }
            }

            pub fn class(self) -> ReasonClass {
                match self {
                    $( Reason::$name => ReasonClass::$class, )*
                }
            }
        }
    };
}

reasons! {
    /// A Machine created in the join window names the host and is free.
    NewNodeMachine => Approval,
    /// A policy inventory entry names the host, and the CSR is in the join window.
    NewNodeInventory => Approval,
    /// A registered Node renews its own client certificate.
    ClientRenewal => Approval,
    /// `client.recovery`: an offline Node's host asks for a new identity.
    NodeRecovery => Approval,
    /// Every SAN belongs to the node, and no other host's claim outranks its.
    ServingAddressesVerified => Approval,

    AlreadyDecided => NotOurs,
    OtherSigner => NotOurs,
    SignerDisabled => NotOurs,
    RenewalsDisabled => NotOurs,

    NodeNotRegistered => Transient,
    UnknownMachine => Transient,
    MachineNotLinked => Transient,
    DuplicateClientRequest => Transient,
    TooManyPending => Transient,
    NewNodeRateLimited => Transient,
    MachineDeleting => Transient,
    AddressConflict => Transient,

    MalformedRequest => Definitive,
    BadSignature => Definitive,
    UnsupportedKey => Definitive,
    WeakKey => Definitive,
    ExpirationTooLong => Definitive,
    BadOrganization => Definitive,
    BadCommonName => Definitive,
    UnexpectedSans => Definitive,
    ForbiddenSanType => Definitive,
    WildcardSan => Definitive,
    NoSans => Definitive,
    BadUsages => Definitive,
    RequesterMismatch => Definitive,
    MissingNodesGroup => Definitive,
    ReservedSan => Definitive,
    MalformedSan => Definitive,
    /// The request asks for an extension a kubelet never asks for (basicConstraints,
    /// nameConstraints, an unknown OID), or key usages `spec.usages` does not list.
    ForbiddenExtension => Definitive,

    NodeAlreadyExists => ForAnAdmin,
    MachineAlreadyLinked => ForAnAdmin,
    /// Two live trusted host generations (Machines) name the host: neither vouches.
    AmbiguousHost => ForAnAdmin,
    OutsideJoinWindow => ForAnAdmin,
    UnknownRequester => ForAnAdmin,
    ForeignSan => ForAnAdmin,
    SanOutsideFence => ForAnAdmin,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
