//! The natOutgoing reconciler against the real iptables and ipset, inside a throw-away
//! network namespace. Needs root:
//! `cargo test -p agent --test nat_netfilter -- --ignored`.

use std::collections::BTreeSet;
use std::fs::File;
use std::time::{Duration, Instant};

use agent::dataplane::nat::NatTable;
use agent::dataplane::netfilter::NetfilterTools;
use agent::dataplane::types::NatOutgoing;
use datastore::model::IpFamily;
use ipnet::IpNet;
use lab::Netns;
use nix::sched::{CloneFlags, setns};

/// Runs `f` on a thread that has entered `ns` (the tools it spawns run there too).
fn in_netns<F, Fut>(ns: &Netns, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let path = ns.path();
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        setns(file, CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(f());
    })
    .join()
    .expect("test thread");
}

fn nets(list: &[&str]) -> BTreeSet<IpNet> {
    list.iter().map(|s| s.parse().expect("cidr")).collect()
}

fn sh(script: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const FOREIGN: &str = "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE";

#[test]
#[ignore = "needs root netns: cargo test -p agent --test nat_netfilter -- --ignored"]
fn nat_outgoing_is_programmed_repaired_and_removed_in_a_real_netfilter() {
    lab::remove_leftovers();
    let ns = Netns::create("nat").expect("netns");
    ns.sh(&format!("iptables -t nat -A POSTROUTING {FOREIGN}"))
        .expect("foreign rule");
    in_netns(&ns, || async {
        let v4 = IpFamily::V4;
        let mut t = NatTable::new(
            v4,
            Box::new(NetfilterTools::new(v4)),
            Duration::from_secs(90),
        );
        let mut want = NatOutgoing {
            masq_pools: nets(&["10.244.0.0/16"]),
            all_pools: nets(&["10.244.0.0/16", "10.99.0.0/16"]),
            snat_to: None,
        };
        t.set_desired(Some(want.clone()));
        let mut now = Instant::now();
        assert!(t.reconcile(now).await.expect("program").changed);
        let rules = sh("iptables-save -t nat");
        assert!(
            rules.contains(
                "-A cali-nat-outgoing -m comment --comment \"cali:flqWnvo8yq4ULQLa\" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully"
            ),
            "{rules}"
        );
        assert!(
            rules.contains(
                "-A POSTROUTING -m comment --comment \"cali:O3lYWMrLQYEMJtB5\" -j cali-POSTROUTING"
            ),
            "{rules}"
        );
        assert!(rules.contains(FOREIGN), "{rules}");
        let sets = sh("ipset save");
        assert!(
            sets.contains("add cali40masq-ipam-pools 10.244.0.0/16"),
            "{sets}"
        );
        assert!(
            sets.contains("add cali40all-ipam-pools 10.99.0.0/16"),
            "{sets}"
        );

        // What we wrote reads back as exactly what we want: a resync changes nothing.
        now += Duration::from_secs(100);
        assert!(!t.reconcile(now).await.expect("resync").changed);

        // Drift (rule deleted, set emptied by hand) is repaired on the resync.
        sh("iptables -t nat -F cali-nat-outgoing; ipset flush cali40all-ipam-pools");
        now += Duration::from_secs(100);
        assert!(t.reconcile(now).await.expect("repair").changed);
        assert!(sh("iptables-save -t nat").contains("-j MASQUERADE --random-fully"));
        assert!(sh("ipset save cali40all-ipam-pools").contains("10.99.0.0/16"));

        // natOutgoingAddress: SNAT instead, and it also reads back in sync.
        want.snat_to = Some("10.0.0.200".parse().expect("ip"));
        t.set_desired(Some(want.clone()));
        assert!(t.reconcile(now).await.expect("snat").changed);
        now += Duration::from_secs(100);
        assert!(!t.reconcile(now).await.expect("snat resync").changed);
        assert!(
            sh("iptables-save -t nat").contains("-j SNAT --to-source 10.0.0.200 --random-fully")
        );

        // No pool with natOutgoing: everything of ours goes, the foreign rule stays.
        t.set_desired(None);
        assert!(t.reconcile(now).await.expect("remove").changed);
        let rules = sh("iptables-save -t nat");
        assert!(!rules.contains("cali-"), "{rules}");
        assert!(rules.contains(FOREIGN), "{rules}");
        assert_eq!(sh("ipset list -n").trim(), "");
    });
}

#[test]
#[ignore = "needs root netns: cargo test -p agent --test nat_netfilter -- --ignored"]
fn ipv6_nat_outgoing_goes_to_ip6tables_and_inet6_sets_beside_the_ipv4_one() {
    lab::remove_leftovers();
    let ns = Netns::create("nat6").expect("netns");
    in_netns(&ns, || async {
        let table = |family| {
            NatTable::new(
                family,
                Box::new(NetfilterTools::new(family)),
                Duration::from_secs(90),
            )
        };
        let (mut t4, mut t6) = (table(IpFamily::V4), table(IpFamily::V6));
        t4.set_desired(Some(NatOutgoing {
            masq_pools: nets(&["10.244.0.0/16"]),
            all_pools: nets(&["10.244.0.0/16"]),
            snat_to: None,
        }));
        t6.set_desired(Some(NatOutgoing {
            masq_pools: nets(&["fd00:244::/48"]),
            all_pools: nets(&["fd00:244::/48", "fd00:99::/48"]),
            snat_to: None,
        }));
        let mut now = Instant::now();
        assert!(t4.reconcile(now).await.expect("program v4").changed);
        assert!(t6.reconcile(now).await.expect("program v6").changed);
        let rules6 = sh("ip6tables-save -t nat");
        assert!(
            rules6.contains(
                "-A cali-nat-outgoing -m comment --comment \"cali:flqWnvo8yq4ULQLa\" -m set --match-set cali60masq-ipam-pools src -m set ! --match-set cali60all-ipam-pools dst -j MASQUERADE --random-fully"
            ),
            "{rules6}"
        );
        assert!(sh("iptables-save -t nat").contains("cali40masq-ipam-pools"));
        let sets = sh("ipset save");
        assert!(
            sets.contains("create cali60masq-ipam-pools hash:net family inet6"),
            "{sets}"
        );
        assert!(
            sets.contains("add cali60all-ipam-pools fd00:99::/48"),
            "{sets}"
        );
        now += Duration::from_secs(100);
        assert!(!t6.reconcile(now).await.expect("resync v6").changed);
        // Removing the IPv6 NAT leaves the IPv4 one alone.
        t6.set_desired(None);
        assert!(t6.reconcile(now).await.expect("remove v6").changed);
        assert!(!sh("ip6tables-save -t nat").contains("cali-"));
        assert!(sh("iptables-save -t nat").contains("cali-nat-outgoing"));
        let left = sh("ipset list -n");
        assert!(!left.contains("cali60"), "{left}");
        t4.set_desired(None);
        assert!(t4.reconcile(now).await.expect("remove v4").changed);
    });
}
