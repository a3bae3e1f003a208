//! The kernel side of pod wiring on its own (no datastore, no IPAM): pods wired by
//! `cni::wiring` inside a lab node namespace answer ARP for 169.254.1.1 with
//! ee:ee:ee:ee:ee:ee, reach each other, pass CHECK, and leave nothing behind on teardown;
//! dual-stack and IPv6-only pods route IPv6 through the host end's link-local address.
//! Needs root: `cargo test -p cni -- --ignored`.

use std::net::IpAddr;

use cni::wiring::{self, Wiring};
use lab::Netns;

fn wiring_for(pod: &Netns, host_if: &str, ips: &[&str]) -> Wiring {
    Wiring {
        host_if: host_if.to_string(),
        container_id: format!("ctr-{host_if}"),
        pod_if: "eth0".to_string(),
        netns: pod.path(),
        ips: ips
            .iter()
            .map(|ip| ip.parse::<IpAddr>().expect("test address"))
            .collect(),
        mtu: 1500,
    }
}

/// Runs `f` inside `node` (the plugin always runs in a node namespace, never the root).
fn in_node<T: Send + 'static>(
    node: &Netns,
    f: impl std::future::Future<Output = cni::Result<T>> + Send + 'static,
) -> cni::Result<T> {
    let file = cni::netns::open(&node.path())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| cni::CniError::dataplane("runtime", e.to_string()))?;
    rt.block_on(cni::netns::run_in(file, move || f))
}

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn wired_pods_reach_the_host_gateway_and_each_other() -> anyhow::Result<()> {
    lab::remove_leftovers();
    let node = Netns::create("wn")?;
    let p1 = Netns::create("wp1")?;
    let p2 = Netns::create("wp2")?;
    let w1 = wiring_for(&p1, "caliaaaaaaaaaa1", &["10.70.0.1"]);
    let w2 = wiring_for(&p2, "caliaaaaaaaaaa2", &["10.70.0.2"]);
    for w in [&w1, &w2] {
        let w = w.clone();
        in_node(&node, async move { wiring::setup(&w).await })?;
    }
    node.sh("sysctl -qw net.ipv4.ip_forward=1")?;
    lab::cni::add_default_route(&node)?;

    let link = node.ip(&["-o", "link", "show", "caliaaaaaaaaaa1"])?;
    assert!(link.contains("ee:ee:ee:ee:ee:ee"), "{link}");
    let routes = node.ip(&["route", "show"])?;
    assert!(
        routes.contains("10.70.0.1 dev caliaaaaaaaaaa1 scope link"),
        "{routes}"
    );
    let pod_routes = p1.ip(&["route", "show"])?;
    assert!(
        pod_routes.contains("default via 169.254.1.1 dev eth0"),
        "{pod_routes}"
    );
    assert!(
        pod_routes.contains("169.254.1.1 dev eth0 scope link"),
        "{pod_routes}"
    );
    let addr = p1.ip(&["-o", "addr", "show", "eth0"])?;
    assert!(addr.contains("inet 10.70.0.1/32"), "{addr}");
    assert_eq!(
        node.sh("cat /proc/sys/net/ipv4/conf/caliaaaaaaaaaa1/proxy_arp")?
            .trim(),
        "1"
    );

    let arp = p1.exec(
        "arping",
        &["-c", "1", "-w", "2", "-I", "eth0", "169.254.1.1"],
    )?;
    let arp_out = String::from_utf8_lossy(&arp.stdout).to_lowercase();
    assert!(arp_out.contains("ee:ee:ee:ee:ee:ee"), "{arp_out}");
    assert!(p1.ping("10.70.0.2", 2), "pod 1 cannot ping pod 2");
    assert!(p2.ping("10.70.0.1", 2), "pod 2 cannot ping pod 1");

    let checked = {
        let w = w1.clone();
        in_node(&node, async move { wiring::check(&w).await })?
    };
    assert!(checked.is_empty(), "{checked:?}");
    p1.ip(&["addr", "flush", "dev", "eth0"])?;
    let broken = {
        let w = w1.clone();
        in_node(&node, async move { wiring::check(&w).await })?
    };
    assert!(
        broken.contains(&"eth0 does not have 10.70.0.1/32".to_string()),
        "{broken:?}"
    );

    for w in [&w1, &w2] {
        let w = w.clone();
        let removed = in_node(&node, async move {
            wiring::teardown(&w.host_if, Some(&w.netns), &w.pod_if, &w.container_id).await
        })?;
        assert_eq!(removed, wiring::Teardown::Removed);
    }
    let again = {
        let w = w1.clone();
        in_node(&node, async move {
            wiring::teardown(&w.host_if, Some(&w.netns), &w.pod_if, &w.container_id).await
        })?
    };
    assert_eq!(
        again,
        wiring::Teardown::Absent,
        "second teardown finds nothing and succeeds"
    );
    assert!(!node.ip(&["link", "show"])?.contains("cali"));
    assert!(!p1.ip(&["link", "show"])?.contains("eth0"));
    Ok(())
}

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn dual_stack_and_ipv6_only_pods_route_ipv6_through_the_host_link_local() -> anyhow::Result<()> {
    lab::remove_leftovers();
    let node = Netns::create("w6n")?;
    let p1 = Netns::create("w6p1")?;
    let p2 = Netns::create("w6p2")?;
    let dual = wiring_for(&p1, "calibbbbbbbbbb1", &["10.71.0.1", "fd00:71::1"]);
    let only6 = wiring_for(&p2, "calibbbbbbbbbb2", &["fd00:71::2"]);
    for w in [&dual, &only6] {
        let w = w.clone();
        in_node(&node, async move { wiring::setup(&w).await })?;
    }
    node.sh("sysctl -qw net.ipv6.conf.all.forwarding=1")?;

    // Inside the pod: the /128 and the default route through the host end's link-local.
    let addr = p1.ip(&["-o", "addr", "show", "eth0"])?;
    assert!(addr.contains("inet 10.71.0.1/32"), "{addr}");
    assert!(addr.contains("inet6 fd00:71::1/128"), "{addr}");
    // The pod's address is usable at once (no DAD on it). Its own link-local address may
    // still be in DAD for a moment, which nothing waits for.
    let global = addr
        .lines()
        .find(|l| l.contains("fd00:71::1/128"))
        .unwrap_or_default();
    assert!(
        !global.contains("tentative"),
        "DAD is off for the pod's address: {addr}"
    );
    let routes6 = p1.ip(&["-6", "route", "show"])?;
    assert!(
        routes6.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
        "{routes6}"
    );
    let routes4 = p2.ip(&["-4", "route", "show"])?;
    assert!(
        routes4.trim().is_empty(),
        "an IPv6-only pod has no IPv4 routes: {routes4}"
    );
    // Host side: the link-local address the MAC fixes, a /128 route per pod, proxy NDP.
    let host = node.ip(&["-o", "addr", "show", "calibbbbbbbbbb1"])?;
    assert!(
        host.contains("inet6 fe80::ecee:eeff:feee:eeee/64 scope link"),
        "{host}"
    );
    // The pods' next hop answers at once: no DAD on the host end.
    assert!(!host.contains("tentative"), "{host}");
    let host_routes = node.ip(&["-6", "route", "show"])?;
    for (ip, dev) in [
        ("fd00:71::1", "calibbbbbbbbbb1"),
        ("fd00:71::2", "calibbbbbbbbbb2"),
    ] {
        assert!(
            host_routes.contains(&format!("{ip} dev {dev} metric 1024")),
            "{host_routes}"
        );
    }
    assert_eq!(
        node.sh("cat /proc/sys/net/ipv6/conf/calibbbbbbbbbb1/proxy_ndp")?
            .trim(),
        "1"
    );
    assert!(
        p1.ping("fd00:71::2", 2),
        "dual-stack pod cannot ping6 the IPv6-only pod"
    );
    assert!(
        p2.ping("fd00:71::1", 2),
        "IPv6-only pod cannot ping6 the dual-stack pod"
    );

    for w in [&dual, &only6] {
        let w = w.clone();
        let problems = in_node(&node, async move { wiring::check(&w).await })?;
        assert!(problems.is_empty(), "{problems:?}");
    }
    p1.ip(&["-6", "route", "del", "default"])?;
    let broken = {
        let w = dual.clone();
        in_node(&node, async move { wiring::check(&w).await })?
    };
    assert_eq!(
        broken,
        ["route default via fe80::ecee:eeff:feee:eeee dev eth0 is missing"],
        "CHECK names the missing IPv6 route"
    );
    for w in [&dual, &only6] {
        let w = w.clone();
        in_node(&node, async move {
            wiring::teardown(&w.host_if, Some(&w.netns), &w.pod_if, &w.container_id).await
        })?;
    }
    assert!(!node.ip(&["-6", "route", "show"])?.contains("fd00:71::"));
    Ok(())
}
