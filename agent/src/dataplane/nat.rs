//! The natOutgoing reconciler, in Felix's shape, one per address family: two `hash:net`
//! ipsets (`cali40masq-ipam-pools`: pools with natOutgoing; `cali40all-ipam-pools`: every
//! pool; `cali60…` for IPv6) and, in the nat table of `iptables` (`ip6tables`),
//! `cali-POSTROUTING` (jumped from `POSTROUTING`) jumping to `cali-nat-outgoing`:
//!
//! ```text
//! -A cali-nat-outgoing -m set --match-set cali40masq-ipam-pools src
//!    -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully
//! ```
//!
//! Owned: those two sets, those two chains and the jump to `cali-POSTROUTING` in
//! `POSTROUTING`; every other rule, chain and set is never touched. Like the route table,
//! each check reads the kernel (`iptables-save -t nat`, `ipset save`), compares it with
//! what is wanted and rewrites only what differs: sets through a temporary set swapped in
//! (no instant where a pool is missing), chains in one `iptables-restore --noflush`
//! transaction. The kernel is read again whenever the wanted state changes and on the
//! resync timer, so drift is repaired; when no pool has natOutgoing everything is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use datastore::model::IpFamily;
use ipnet::IpNet;
use tracing::info;

use super::netfilter::{Netfilter, NetfilterError};
use super::types::NatOutgoing;

/// Our chain jumped from the nat table's `POSTROUTING`.
pub const POSTROUTING_CHAIN: &str = "cali-POSTROUTING";
/// The chain holding the masquerade rule.
pub const NAT_OUTGOING_CHAIN: &str = "cali-nat-outgoing";
/// The chains we own, in creation order.
const OWNED_CHAINS: [&str; 2] = [POSTROUTING_CHAIN, NAT_OUTGOING_CHAIN];
/// The jump from `POSTROUTING`, as `iptables-save` prints it.
const JUMP_RULE: &str = r#"-m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING"#;
/// `cali-POSTROUTING`'s rule.
const TO_NAT_OUTGOING_RULE: &str =
    r#"-m comment --comment "cali:Z-c7XtVd2Bq7s_hA" -j cali-nat-outgoing"#;

/// The names of one family's sets (Felix's `cali40` / `cali60` prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatSets {
    /// Pools whose traffic is masqueraded.
    pub masq: &'static str,
    /// Every pool (destinations never masqueraded).
    pub all: &'static str,
    /// The names the sets are filled under before being swapped in.
    temps: [&'static str; 2],
    /// `ipset create` options.
    options: &'static str,
}

impl NatSets {
    pub fn of(family: IpFamily) -> NatSets {
        match family {
            IpFamily::V4 => NatSets {
                masq: "cali40masq-ipam-pools",
                all: "cali40all-ipam-pools",
                temps: ["cali4tmasq-ipam-pools", "cali4tall-ipam-pools"],
                options: "hash:net family inet maxelem 1048576",
            },
            IpFamily::V6 => NatSets {
                masq: "cali60masq-ipam-pools",
                all: "cali60all-ipam-pools",
                temps: ["cali6tmasq-ipam-pools", "cali6tall-ipam-pools"],
                options: "hash:net family inet6 maxelem 1048576",
            },
        }
    }

    fn owned(&self) -> [&'static str; 2] {
        [self.masq, self.all]
    }
}

/// What the kernel holds of ours: present sets with their members, present owned chains
/// with their rules (as `iptables-save` prints them, without `-A <chain> `), and the
/// rules in `POSTROUTING` that jump to `cali-POSTROUTING`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatDataplane {
    pub sets: BTreeMap<String, BTreeSet<IpNet>>,
    pub chains: BTreeMap<String, Vec<String>>,
    pub jumps: Vec<String>,
}

/// The rule in `cali-nat-outgoing`.
pub fn nat_outgoing_rule(nat: &NatOutgoing, sets: NatSets) -> String {
    let target = match nat.snat_to {
        Some(addr) => format!("SNAT --to-source {addr} --random-fully"),
        None => "MASQUERADE --random-fully".to_string(),
    };
    format!(
        r#"-m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set {} src -m set ! --match-set {} dst -j {target}"#,
        sets.masq, sets.all
    )
}

/// The kernel state `desired` amounts to.
pub fn expected(desired: Option<&NatOutgoing>, sets: NatSets) -> NatDataplane {
    let Some(nat) = desired else {
        return NatDataplane::default();
    };
    NatDataplane {
        sets: BTreeMap::from([
            (sets.masq.to_string(), nat.masq_pools.clone()),
            (sets.all.to_string(), nat.all_pools.clone()),
        ]),
        chains: BTreeMap::from([
            (
                POSTROUTING_CHAIN.to_string(),
                vec![TO_NAT_OUTGOING_RULE.to_string()],
            ),
            (
                NAT_OUTGOING_CHAIN.to_string(),
                vec![nat_outgoing_rule(nat, sets)],
            ),
        ]),
        jumps: vec![JUMP_RULE.to_string()],
    }
}

/// Reads our chains and jumps out of `iptables-save -t nat`.
pub fn parse_iptables_save(text: &str, into: &mut NatDataplane) {
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if OWNED_CHAINS.contains(&name) {
                into.chains.entry(name.to_string()).or_default();
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let Some((chain, spec)) = rule.split_once(' ') else {
                continue;
            };
            if OWNED_CHAINS.contains(&chain) {
                into.chains
                    .entry(chain.to_string())
                    .or_default()
                    .push(spec.to_string());
            } else if chain == "POSTROUTING" && spec.ends_with(&format!("-j {POSTROUTING_CHAIN}")) {
                into.jumps.push(spec.to_string());
            }
        }
    }
}

/// The members of a set from `ipset save <name>`.
pub fn parse_ipset_save(text: &str) -> BTreeSet<IpNet> {
    text.lines()
        .filter_map(|l| l.strip_prefix("add "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|m| {
            m.parse::<IpNet>()
                .ok()
                .or_else(|| m.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

/// An `ipset restore` script that makes `name` hold exactly `members`: filled under a
/// temporary name and swapped in, so the live set is never half-written.
pub fn ipset_script(
    name: &str,
    temp: &str,
    options: &str,
    exists: bool,
    members: &BTreeSet<IpNet>,
) -> String {
    let mut s = String::new();
    if !exists {
        s.push_str(&format!("create {name} {options}\n"));
    }
    s.push_str(&format!("create {temp} {options} -exist\nflush {temp}\n"));
    for m in members {
        s.push_str(&format!("add {temp} {m}\n"));
    }
    s.push_str(&format!("swap {temp} {name}\ndestroy {temp}\n"));
    s
}

/// An `iptables-restore --noflush` script taking the nat table from `current` to what
/// `desired` wants (declaring a chain flushes it; only our chains and jumps are named).
pub fn iptables_script(
    desired: Option<&NatOutgoing>,
    current: &NatDataplane,
    sets: NatSets,
) -> String {
    let want = expected(desired, sets);
    let mut s = String::from("*nat\n");
    // Jumps: keep one exact copy when wanted, delete every other.
    let mut kept = false;
    for jump in &current.jumps {
        if !want.jumps.is_empty() && jump == JUMP_RULE && !kept {
            kept = true;
            continue;
        }
        s.push_str(&format!("-D POSTROUTING {jump}\n"));
    }
    match desired {
        Some(_) => {
            for chain in OWNED_CHAINS {
                s.push_str(&format!(":{chain} - [0:0]\n"));
            }
            for chain in OWNED_CHAINS {
                for rule in want.chains.get(chain).into_iter().flatten() {
                    s.push_str(&format!("-A {chain} {rule}\n"));
                }
            }
            if !kept {
                s.push_str(&format!("-I POSTROUTING 1 {JUMP_RULE}\n"));
            }
        }
        None => {
            let present: Vec<&str> = OWNED_CHAINS
                .into_iter()
                .filter(|c| current.chains.contains_key(*c))
                .collect();
            for chain in &present {
                s.push_str(&format!(":{chain} - [0:0]\n"));
            }
            for chain in &present {
                s.push_str(&format!("-X {chain}\n"));
            }
        }
    }
    s.push_str("COMMIT\n");
    s
}

/// What one check did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatReport {
    /// The kernel was rewritten (it differed from what is wanted).
    pub changed: bool,
}

/// Owns the natOutgoing sets and chains of one family.
pub struct NatTable {
    family: IpFamily,
    sets: NatSets,
    netfilter: Box<dyn Netfilter>,
    desired: Option<NatOutgoing>,
    /// The desired state last confirmed in the kernel, if it still holds.
    verified: Option<Option<NatOutgoing>>,
    next_check: Instant,
    interval: Duration,
}

impl NatTable {
    /// A table of `family` that reads and repairs the kernel at least every `interval`
    /// (`netfilter`: that family's tools).
    pub fn new(family: IpFamily, netfilter: Box<dyn Netfilter>, interval: Duration) -> NatTable {
        NatTable {
            family,
            sets: NatSets::of(family),
            netfilter,
            desired: None,
            verified: None,
            next_check: Instant::now(),
            interval,
        }
    }

    /// The family this table programs.
    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// Replaces what is wanted; the next [`reconcile`](Self::reconcile) acts on it.
    pub fn set_desired(&mut self, desired: Option<NatOutgoing>) {
        self.desired = desired;
    }

    /// What is wanted.
    pub fn desired(&self) -> Option<&NatOutgoing> {
        self.desired.as_ref()
    }

    /// Brings the kernel in line when the wanted state changed or the resync is due;
    /// otherwise does nothing (cheap to call on every dataplane pass).
    pub async fn reconcile(&mut self, now: Instant) -> Result<NatReport, NetfilterError> {
        if self.verified.as_ref() == Some(&self.desired) && now < self.next_check {
            return Ok(NatReport::default());
        }
        let result = self.check().await;
        match &result {
            Ok(_) => {
                self.verified = Some(self.desired.clone());
                self.next_check = now + self.interval;
            }
            // Nothing wanted and no tools: there cannot be anything of ours to remove.
            Err(NetfilterError::Missing(_)) if self.desired.is_none() => {
                self.verified = Some(None);
                self.next_check = now + self.interval;
                return Ok(NatReport::default());
            }
            Err(_) => self.verified = None,
        }
        result
    }

    /// Reads what the kernel holds of ours.
    pub async fn read(&self) -> Result<NatDataplane, NetfilterError> {
        let mut current = NatDataplane::default();
        parse_iptables_save(&self.netfilter.save_nat().await?, &mut current);
        for set in self.sets.owned() {
            if let Some(text) = self.netfilter.save_ipset(set).await? {
                current
                    .sets
                    .insert(set.to_string(), parse_ipset_save(&text));
            }
        }
        Ok(current)
    }

    async fn check(&self) -> Result<NatReport, NetfilterError> {
        let current = self.read().await?;
        let want = expected(self.desired.as_ref(), self.sets);
        if current == want {
            return Ok(NatReport::default());
        }
        match &self.desired {
            Some(_) => {
                // Sets first: the rule refers to them.
                for (set, temp) in self.sets.owned().into_iter().zip(self.sets.temps) {
                    let members = want.sets.get(set).cloned().unwrap_or_default();
                    let have = current.sets.get(set);
                    if have != Some(&members) {
                        let script =
                            ipset_script(set, temp, self.sets.options, have.is_some(), &members);
                        self.netfilter.restore_ipset(&script).await?;
                    }
                }
                if current.chains != want.chains || current.jumps != want.jumps {
                    let script = iptables_script(self.desired.as_ref(), &current, self.sets);
                    self.netfilter.restore_nat(&script).await?;
                }
                info!(
                    family = %self.family,
                    masq = ?self.desired.as_ref().map(|d| &d.masq_pools),
                    "programmed natOutgoing"
                );
            }
            None => {
                // Rules first: a set still referenced cannot be destroyed.
                if !current.chains.is_empty() || !current.jumps.is_empty() {
                    let script = iptables_script(None, &current, self.sets);
                    self.netfilter.restore_nat(&script).await?;
                }
                for set in current.sets.keys() {
                    self.netfilter
                        .restore_ipset(&format!("destroy {set}\n"))
                        .await?;
                }
                info!(family = %self.family, "removed natOutgoing rules: no pool has natOutgoing");
            }
        }
        Ok(NatReport { changed: true })
    }
}

#[cfg(test)]
#[path = "nat_tests.rs"]
mod tests;
