//! Graceful restart, the receiving speaker's side (RFC 4724 §4.2), as pure decisions: what
//! a peer promised when its session came up, and what its routes get when the session
//! goes down. The speaker task keeps the [`Promise`] per peer and does what [`Promise::on_down`]
//! says (mark routes stale, arm the restart timer) or flushes.

use std::time::Duration;

use crate::prefix::Afi;
use crate::wire::open::GracefulRestartCap;

/// What an established session's peer promised in its Graceful Restart capability.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Promise {
    /// The peer's Restart Time in seconds; none without the capability.
    pub restart_time: Option<u16>,
    /// The families it listed that the session also negotiated.
    pub families: Vec<Afi>,
}

/// What a peer's routes get when its session goes down gracefully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// The families whose routes stay, marked stale.
    pub families: Vec<Afi>,
    /// How long they stay without a new session.
    pub restart_time: Duration,
}

impl Promise {
    /// From the peer's capability (if it sent one), over the families the session
    /// negotiated.
    pub fn of(cap: Option<&GracefulRestartCap>, negotiated: &[Afi]) -> Promise {
        let Some(cap) = cap else {
            return Promise::default();
        };
        Promise {
            restart_time: Some(cap.restart_time),
            families: cap
                .families
                .iter()
                .map(|&(afi, _)| afi)
                .filter(|a| negotiated.contains(a))
                .collect(),
        }
    }

    /// When the session goes down: with `graceful` (the way it ended allows a restart)
    /// the families listed with a non-zero Restart Time are kept; none listed (BIRD's
    /// "graceful restart aware") keeps nothing. `None`: flush every route.
    pub fn on_down(&self, graceful: bool) -> Option<Retention> {
        let time = self.restart_time.filter(|&t| t > 0)?;
        if !graceful || self.families.is_empty() {
            return None;
        }
        Some(Retention {
            families: self.families.clone(),
            restart_time: Duration::from_secs(u64::from(time)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(time: u16, families: &[Afi]) -> GracefulRestartCap {
        GracefulRestartCap {
            restart_time: time,
            restarting: false,
            notification: false,
            families: families.iter().map(|&a| (a, true)).collect(),
        }
    }

    #[test]
    fn the_families_listed_and_negotiated_are_kept_for_the_restart_time() {
        let p = Promise::of(Some(&cap(120, &[Afi::Ipv4, Afi::Ipv6])), &[Afi::Ipv4]);
        assert_eq!(
            p.on_down(true),
            Some(Retention {
                families: vec![Afi::Ipv4],
                restart_time: Duration::from_secs(120),
            })
        );
    }

    #[test]
    fn nothing_is_kept_without_the_capability_a_family_a_restart_time_or_a_graceful_end() {
        assert_eq!(Promise::of(None, &[Afi::Ipv4]).on_down(true), None);
        let aware_only = Promise::of(Some(&cap(120, &[])), &[Afi::Ipv4]);
        assert_eq!(aware_only.on_down(true), None);
        let zero = Promise::of(Some(&cap(0, &[Afi::Ipv4])), &[Afi::Ipv4]);
        assert_eq!(zero.on_down(true), None);
        let full = Promise::of(Some(&cap(120, &[Afi::Ipv4])), &[Afi::Ipv4]);
        assert_eq!(full.on_down(false), None);
    }
}
