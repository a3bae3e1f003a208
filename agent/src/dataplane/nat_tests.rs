//! The natOutgoing reconciler against an in-memory netfilter that interprets the scripts
//! it is given (the subset of iptables-restore and ipset restore the reconciler writes).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::*;

#[derive(Default)]
struct Tables {
    /// Chain name -> rules (`POSTROUTING` included), in order.
    chains: BTreeMap<String, Vec<String>>,
    sets: BTreeMap<String, BTreeSet<IpNet>>,
    restores: usize,
}

#[derive(Clone, Default)]
struct FakeNetfilter(Arc<Mutex<Tables>>);

impl FakeNetfilter {
    fn new() -> FakeNetfilter {
        let f = FakeNetfilter::default();
        f.lock().chains.insert("POSTROUTING".into(), Vec::new());
        f
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn fail(what: &str) -> NetfilterError {
    NetfilterError::Failed {
        cmd: "fake".into(),
        stderr: what.into(),
    }
}

#[async_trait]
impl Netfilter for FakeNetfilter {
    async fn save_nat(&self) -> Result<String, NetfilterError> {
        let t = self.lock();
        let mut s = String::from("*nat\n");
        for name in t.chains.keys() {
            s.push_str(&format!(":{name} - [0:0]\n"));
        }
        for (name, rules) in &t.chains {
            for r in rules {
                s.push_str(&format!("-A {name} {r}\n"));
            }
        }
        s.push_str("COMMIT\n");
        Ok(s)
    }

    async fn restore_nat(&self, script: &str) -> Result<(), NetfilterError> {
        let mut t = self.lock();
        t.restores += 1;
        // One transaction: work on a copy, commit at the end.
        let mut chains = t.chains.clone();
        for line in script.lines() {
            let words: Vec<&str> = line.splitn(3, ' ').collect();
            match words.as_slice() {
                ["*nat"] | ["COMMIT"] => {}
                [decl, ..] if decl.starts_with(':') => {
                    chains.insert(decl[1..].to_string(), Vec::new());
                }
                ["-A", chain, rule] => chains
                    .get_mut(*chain)
                    .ok_or_else(|| fail("no chain"))?
                    .push((*rule).to_string()),
                ["-I", chain, rest] => {
                    let rule = rest.strip_prefix("1 ").ok_or_else(|| fail("position"))?;
                    chains
                        .get_mut(*chain)
                        .ok_or_else(|| fail("no chain"))?
                        .insert(0, rule.to_string());
                }
                ["-D", chain, rule] => {
                    let rules = chains.get_mut(*chain).ok_or_else(|| fail("no chain"))?;
                    let at = rules
                        .iter()
                        .position(|r| r == rule)
                        .ok_or_else(|| fail("no such rule"))?;
                    rules.remove(at);
                }
                ["-X", chain] => {
                    let referenced = chains
                        .values()
                        .flatten()
                        .any(|r| r.ends_with(&format!("-j {chain}")));
                    if referenced {
                        return Err(fail("chain in use"));
                    }
                    chains.remove(*chain);
                }
                _ => return Err(fail(&format!("unexpected line {line}"))),
            }
        }
        t.chains = chains;
        Ok(())
    }

    async fn save_ipset(&self, name: &str) -> Result<Option<String>, NetfilterError> {
        let t = self.lock();
        Ok(t.sets.get(name).map(|members| {
            let mut s = format!("create {name} hash:net family inet hashsize 1024\n");
            for m in members {
                s.push_str(&format!("add {name} {m}\n"));
            }
            s
        }))
    }

    async fn restore_ipset(&self, script: &str) -> Result<(), NetfilterError> {
        let mut t = self.lock();
        t.restores += 1;
        for line in script.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["create", name, ..] => {
                    if t.sets.contains_key(*name) && !words.contains(&"-exist") {
                        return Err(fail("set exists"));
                    }
                    t.sets.entry((*name).to_string()).or_default();
                }
                ["flush", name] => t.sets.get_mut(*name).ok_or_else(|| fail("no set"))?.clear(),
                ["add", name, member] => {
                    let m = member.parse().map_err(|_| fail("member"))?;
                    t.sets
                        .get_mut(*name)
                        .ok_or_else(|| fail("no set"))?
                        .insert(m);
                }
                ["swap", a, b] => {
                    let x = t.sets.remove(*a).ok_or_else(|| fail("no set"))?;
                    let y = t.sets.remove(*b).ok_or_else(|| fail("no set"))?;
                    t.sets.insert((*a).to_string(), y);
                    t.sets.insert((*b).to_string(), x);
                }
                ["destroy", name] => {
                    let used = t.chains.values().flatten().any(|r| r.contains(name));
                    if used {
                        return Err(fail("set in use"));
                    }
                    t.sets.remove(*name).ok_or_else(|| fail("no set"))?;
                }
                _ => return Err(fail(&format!("unexpected line {line}"))),
            }
        }
        Ok(())
    }
}

fn nets(list: &[&str]) -> BTreeSet<IpNet> {
    list.iter().map(|s| s.parse().expect("cidr")).collect()
}

fn nat(masq: &[&str], all: &[&str]) -> NatOutgoing {
    NatOutgoing {
        masq_pools: nets(masq),
        all_pools: nets(all),
        snat_to: None,
    }
}

const FOREIGN: &str = "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE";

fn table(fake: &FakeNetfilter) -> NatTable {
    NatTable::new(
        IpFamily::V4,
        Box::new(fake.clone()),
        Duration::from_secs(90),
    )
}

const MASQ_SET: &str = "cali40masq-ipam-pools";
const ALL_SET: &str = "cali40all-ipam-pools";

#[tokio::test]
async fn nat_outgoing_is_programmed_in_felix_shape_beside_foreign_rules() {
    let fake = FakeNetfilter::new();
    fake.lock()
        .chains
        .insert("POSTROUTING".into(), vec![FOREIGN.into()]);
    let mut t = table(&fake);
    t.set_desired(Some(nat(
        &["10.244.0.0/16"],
        &["10.244.0.0/16", "10.99.0.0/16"],
    )));
    let report = t.reconcile(Instant::now()).await.expect("reconcile");
    assert!(report.changed);
    let tables = fake.lock();
    assert_eq!(
        tables.chains.get("POSTROUTING"),
        Some(&vec![JUMP_RULE.to_string(), FOREIGN.to_string()])
    );
    assert_eq!(
        tables.chains.get(NAT_OUTGOING_CHAIN),
        Some(&vec![
            r#"-m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully"#.to_string()
        ])
    );
    assert_eq!(tables.sets.get(MASQ_SET), Some(&nets(&["10.244.0.0/16"])));
    assert_eq!(
        tables.sets.get(ALL_SET),
        Some(&nets(&["10.244.0.0/16", "10.99.0.0/16"]))
    );
    assert!(!tables.sets.contains_key("cali4tmasq-ipam-pools"));
}

#[tokio::test]
async fn an_unchanged_state_is_not_rewritten_and_not_even_read_before_the_resync() {
    let fake = FakeNetfilter::new();
    let mut t = table(&fake);
    t.set_desired(Some(nat(&["10.244.0.0/16"], &["10.244.0.0/16"])));
    let now = Instant::now();
    t.reconcile(now).await.expect("first");
    let writes = fake.lock().restores;
    // Drift before the resync is due is not seen (kernel events do not cover netfilter)...
    fake.lock().sets.insert(ALL_SET.into(), BTreeSet::new());
    let r = t
        .reconcile(now + Duration::from_secs(1))
        .await
        .expect("early");
    assert!(!r.changed);
    assert_eq!(fake.lock().restores, writes);
    // ...and is repaired by the resync.
    let r = t
        .reconcile(now + Duration::from_secs(91))
        .await
        .expect("resync");
    assert!(r.changed);
    assert_eq!(
        fake.lock().sets.get(ALL_SET),
        Some(&nets(&["10.244.0.0/16"]))
    );
    let r = t
        .reconcile(now + Duration::from_secs(200))
        .await
        .expect("again");
    assert!(!r.changed, "a state in sync is left alone");
}

#[tokio::test]
async fn a_changed_pool_list_updates_the_sets_and_leaves_the_rules() {
    let fake = FakeNetfilter::new();
    let mut t = table(&fake);
    t.set_desired(Some(nat(&["10.244.0.0/16"], &["10.244.0.0/16"])));
    t.reconcile(Instant::now()).await.expect("first");
    let rules_before = fake.lock().chains.clone();
    t.set_desired(Some(nat(
        &["10.244.0.0/16", "10.10.0.0/16"],
        &["10.244.0.0/16", "10.10.0.0/16"],
    )));
    t.reconcile(Instant::now()).await.expect("second");
    let tables = fake.lock();
    assert_eq!(tables.chains, rules_before);
    assert_eq!(
        tables.sets.get(MASQ_SET),
        Some(&nets(&["10.10.0.0/16", "10.244.0.0/16"]))
    );
}

#[tokio::test]
async fn duplicate_or_edited_jumps_are_repaired() {
    let fake = FakeNetfilter::new();
    let mut t = table(&fake);
    t.set_desired(Some(nat(&["10.244.0.0/16"], &["10.244.0.0/16"])));
    t.reconcile(Instant::now()).await.expect("first");
    fake.lock()
        .chains
        .get_mut("POSTROUTING")
        .expect("chain")
        .push(JUMP_RULE.into());
    let later = Instant::now() + Duration::from_secs(100);
    assert!(t.reconcile(later).await.expect("repair").changed);
    assert_eq!(
        fake.lock().chains.get("POSTROUTING"),
        Some(&vec![JUMP_RULE.to_string()])
    );
}

#[tokio::test]
async fn no_pool_with_nat_outgoing_removes_everything_of_ours_and_nothing_else() {
    let fake = FakeNetfilter::new();
    fake.lock()
        .chains
        .insert("POSTROUTING".into(), vec![FOREIGN.into()]);
    fake.lock()
        .sets
        .insert("foreign-set".into(), BTreeSet::new());
    let mut t = table(&fake);
    t.set_desired(Some(nat(&["10.244.0.0/16"], &["10.244.0.0/16"])));
    t.reconcile(Instant::now()).await.expect("program");
    t.set_desired(None);
    assert!(t.reconcile(Instant::now()).await.expect("remove").changed);
    let tables = fake.lock();
    assert_eq!(
        tables.chains.keys().collect::<Vec<_>>(),
        vec!["POSTROUTING"]
    );
    assert_eq!(
        tables.chains.get("POSTROUTING"),
        Some(&vec![FOREIGN.to_string()])
    );
    assert_eq!(tables.sets.keys().collect::<Vec<_>>(), vec!["foreign-set"]);
}

#[tokio::test]
async fn nothing_wanted_and_no_tools_is_not_an_error() {
    struct NoTools;
    #[async_trait]
    impl Netfilter for NoTools {
        async fn save_nat(&self) -> Result<String, NetfilterError> {
            Err(NetfilterError::Missing("iptables-save".into()))
        }
        async fn restore_nat(&self, _: &str) -> Result<(), NetfilterError> {
            Err(NetfilterError::Missing("iptables-restore".into()))
        }
        async fn save_ipset(&self, _: &str) -> Result<Option<String>, NetfilterError> {
            Err(NetfilterError::Missing("ipset".into()))
        }
        async fn restore_ipset(&self, _: &str) -> Result<(), NetfilterError> {
            Err(NetfilterError::Missing("ipset".into()))
        }
    }
    let mut t = NatTable::new(IpFamily::V4, Box::new(NoTools), Duration::from_secs(90));
    assert_eq!(t.reconcile(Instant::now()).await, Ok(NatReport::default()));
    t.set_desired(Some(nat(&["10.244.0.0/16"], &["10.244.0.0/16"])));
    assert!(matches!(
        t.reconcile(Instant::now()).await,
        Err(NetfilterError::Missing(_))
    ));
}

#[test]
fn snat_address_replaces_masquerade() {
    let mut n = nat(&["10.244.0.0/16"], &["10.244.0.0/16"]);
    n.snat_to = Some("10.0.0.200".parse().expect("ip"));
    assert!(
        nat_outgoing_rule(&n, NatSets::of(IpFamily::V4))
            .ends_with("-j SNAT --to-source 10.0.0.200 --random-fully")
    );
}

#[test]
fn ipset_save_output_is_parsed() {
    let text = "create cali40all-ipam-pools hash:net family inet hashsize 1024 maxelem 1048576\n\
                add cali40all-ipam-pools 10.244.0.0/16\nadd cali40all-ipam-pools 10.1.2.3\n";
    assert_eq!(
        parse_ipset_save(text),
        nets(&["10.244.0.0/16", "10.1.2.3/32"])
    );
}

#[tokio::test]
async fn an_ipv6_table_programs_the_cali60_sets_in_inet6() {
    let fake = FakeNetfilter::new();
    let mut t = NatTable::new(
        IpFamily::V6,
        Box::new(fake.clone()),
        Duration::from_secs(90),
    );
    t.set_desired(Some(nat(
        &["fd00:244::/48"],
        &["fd00:244::/48", "fd00:99::/48"],
    )));
    let report = t.reconcile(Instant::now()).await.expect("reconcile");
    assert!(report.changed);
    let tables = fake.lock();
    assert_eq!(
        tables.sets.get("cali60masq-ipam-pools"),
        Some(&nets(&["fd00:244::/48"]))
    );
    assert!(!tables.sets.contains_key("cali40masq-ipam-pools"));
    let rule = &tables.chains["cali-nat-outgoing"][0];
    assert!(
        rule.contains(
            "--match-set cali60masq-ipam-pools src -m set ! --match-set cali60all-ipam-pools dst"
        ),
        "{rule}"
    );
}
