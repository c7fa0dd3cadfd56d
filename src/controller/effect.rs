//! What a decision does, as a value (the index/writer split of linkerd's policy
//! controller): computed purely from the decision, the policy's mode, leadership and
//! whether the decision was explained already; applied by [`super::writer`]. Dry-run and
//! leadership are each one `if` here, and nowhere else.

use std::time::Duration;

use kube::runtime::controller::Action;

use crate::decision::{Decision, Reason, ReasonClass, Verdict};
use crate::policy::Mode;

/// Requeue after a transient `Wait`; watches on Nodes and Machines usually come first.
pub(crate) const RETRY_TRANSIENT: Duration = Duration::from_secs(30);
/// Requeue after a definitive refusal that is left pending (`deny: false`): only a change
/// in the cluster or the policy can alter it, and those trigger a reconcile themselves.
pub(crate) const RETRY_DEFINITIVE: Duration = Duration::from_secs(600);

/// When to look again at a CSR left pending for `reason`, failing any change that
/// triggers a reconcile first.
pub(crate) fn retry_after(reason: Reason) -> Duration {
    match reason.class() {
        ReasonClass::Definitive | ReasonClass::ForAnAdmin => RETRY_DEFINITIVE,
        ReasonClass::Transient | ReasonClass::Approval | ReasonClass::NotOurs => RETRY_TRANSIENT,
    }
}

/// What one reconcile does about a CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Effect {
    /// Write the verdict's condition through `/approval`.
    pub(super) write: bool,
    /// Explain the decision (Event, log line, metric); the mode marks a dry-run Event.
    pub(super) explain: Option<Mode>,
    /// Look again after this long; `None`: only when something changes.
    pub(super) requeue: Option<Duration>,
}

impl Effect {
    pub(super) const NOTHING: Effect = Effect {
        write: false,
        explain: None,
        requeue: None,
    };

    pub(super) fn action(self) -> Action {
        self.requeue
            .map_or_else(Action::await_change, Action::requeue)
    }
}

/// The effect of `decision` in `mode`, for a replica that may write (`leading`) or not,
/// when the same decision was (`explained`) or was not explained already.
pub(super) fn of(decision: &Decision, mode: Mode, leading: bool, explained: bool) -> Effect {
    // A standby, or a leader fenced because its renewals fail, writes nothing at all: not
    // even an Event (the leader says it). Winning the Lease reconciles everything again.
    if !leading {
        return Effect::NOTHING;
    }
    let explain = (!explained).then_some(mode);
    match decision.verdict {
        Verdict::Ignore => Effect::NOTHING,
        Verdict::Approve | Verdict::Deny => Effect {
            // Dry-run decides, logs and explains, but never writes a verdict.
            write: mode == Mode::Enforce,
            explain,
            requeue: None,
        },
        Verdict::Wait => Effect {
            write: false,
            explain,
            requeue: Some(retry_after(decision.reason)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(verdict: Verdict, reason: Reason) -> Decision {
        Decision {
            verdict,
            reason,
            message: String::new(),
            node: None,
            wants: None,
            mints_for: None,
            vouches_for: Vec::new(),
        }
    }

    use crate::approval::fixtures::waiting as wait;

    const fn effect(write: bool, explain: Option<Mode>, requeue: Option<Duration>) -> Effect {
        Effect {
            write,
            explain,
            requeue,
        }
    }

    const ENFORCE: Option<Mode> = Some(Mode::Enforce);
    const DRY_RUN: Option<Mode> = Some(Mode::DryRun);
    const SHORT: Option<Duration> = Some(RETRY_TRANSIENT);
    const LONG: Option<Duration> = Some(RETRY_DEFINITIVE);

    #[test]
    fn each_combination_of_verdict_mode_leadership_and_memory() {
        let approve = decision(Verdict::Approve, Reason::NewNodeMachine);
        let deny = decision(Verdict::Deny, Reason::BadOrganization);
        let transient = wait(Reason::NodeNotRegistered);
        let definitive = wait(Reason::BadOrganization);
        let for_an_admin = wait(Reason::NodeAlreadyExists);
        let ignore = decision(Verdict::Ignore, Reason::OtherSigner);
        use Mode::{DryRun, Enforce};
        #[rustfmt::skip]
        let rows: [(&Decision, Mode, bool, bool, Effect); 24] = [
            // decision      mode     leading explained  effect
            (&approve,      Enforce, true,  false, effect(true,  ENFORCE, None)),
            (&approve,      Enforce, true,  true,  effect(true,  None,    None)),
            (&approve,      DryRun,  true,  false, effect(false, DRY_RUN, None)),
            (&approve,      DryRun,  true,  true,  Effect::NOTHING),
            (&deny,         Enforce, true,  false, effect(true,  ENFORCE, None)),
            (&deny,         Enforce, true,  true,  effect(true,  None,    None)),
            (&deny,         DryRun,  true,  false, effect(false, DRY_RUN, None)),
            (&deny,         DryRun,  true,  true,  Effect::NOTHING),
            (&transient,    Enforce, true,  false, effect(false, ENFORCE, SHORT)),
            (&transient,    Enforce, true,  true,  effect(false, None,    SHORT)),
            (&transient,    DryRun,  true,  false, effect(false, DRY_RUN, SHORT)),
            (&transient,    DryRun,  true,  true,  effect(false, None,    SHORT)),
            (&definitive,   Enforce, true,  false, effect(false, ENFORCE, LONG)),
            (&definitive,   DryRun,  true,  true,  effect(false, None,    LONG)),
            (&for_an_admin, Enforce, true,  false, effect(false, ENFORCE, LONG)),
            (&for_an_admin, DryRun,  true,  false, effect(false, DRY_RUN, LONG)),
            (&ignore,       Enforce, true,  false, Effect::NOTHING),
            (&ignore,       DryRun,  true,  false, Effect::NOTHING),
            // A standby writes nothing, explains nothing, and waits for the Lease.
            (&approve,      Enforce, false, false, Effect::NOTHING),
            (&approve,      DryRun,  false, false, Effect::NOTHING),
            (&deny,         Enforce, false, false, Effect::NOTHING),
            (&transient,    Enforce, false, false, Effect::NOTHING),
            (&definitive,   DryRun,  false, true,  Effect::NOTHING),
            (&ignore,       Enforce, false, false, Effect::NOTHING),
        ];
        for (decision, mode, leading, explained, expected) in rows {
            assert_eq!(
                of(decision, mode, leading, explained),
                expected,
                "{} {:?} in {mode:?}, leading {leading}, explained {explained}",
                decision.verdict.as_str(),
                decision.reason,
            );
        }
    }

    #[test]
    fn no_combination_writes_in_dry_run_or_on_a_standby_or_explains_twice() {
        let decisions = [
            decision(Verdict::Approve, Reason::ClientRenewal),
            decision(Verdict::Deny, Reason::WeakKey),
            wait(Reason::TooManyPending),
            wait(Reason::ForeignSan),
            decision(Verdict::Ignore, Reason::SignerDisabled),
        ];
        for decision in &decisions {
            for mode in [Mode::Enforce, Mode::DryRun] {
                for leading in [true, false] {
                    for explained in [true, false] {
                        let effect = of(decision, mode, leading, explained);
                        let case = format!("{decision:?} {mode:?} {leading} {explained}");
                        assert!(!(effect.write && mode == Mode::DryRun), "{case}");
                        assert!(leading || effect == Effect::NOTHING, "{case}");
                        assert!(!(explained && effect.explain.is_some()), "{case}");
                        assert!(effect.explain.is_none_or(|m| m == mode), "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_requeue_delay_follows_the_class_of_the_reason() {
        assert_eq!(
            retry_after(Reason::NodeNotRegistered),
            Duration::from_secs(30)
        );
        assert_eq!(retry_after(Reason::TooManyPending), Duration::from_secs(30));
        assert_eq!(retry_after(Reason::BadSignature), Duration::from_secs(600));
        assert_eq!(
            retry_after(Reason::OutsideJoinWindow),
            Duration::from_secs(600)
        );
        assert_eq!(
            of(&wait(Reason::UnknownRequester), Mode::Enforce, true, false).action(),
            Action::requeue(Duration::from_secs(600))
        );
        assert_eq!(
            of(
                &decision(Verdict::Approve, Reason::ClientRenewal),
                Mode::Enforce,
                true,
                false
            )
            .action(),
            Action::await_change()
        );
    }
}
