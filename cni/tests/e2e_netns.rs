//! The plugins end to end in one lab node with real etcd: pods (namespaces) added through
//! `calico` (IPAM delegated to `calico-ipam`) get a /32, get ARP answers for 169.254.1.1
//! from ee:ee:ee:ee:ee:ee, ping each other; the 65th pod claims a second block; DEL frees
//! the address, removes the veth and the endpoint, and succeeds twice.
//! Needs root: `cargo test -p cni -- --ignored`.

mod common;

use std::collections::BTreeSet;

use anyhow::Result;
use common::CniLab;
use datastore::model::WorkloadEndpoint;
use lab::Netns;
use lab::cni::Call;

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn three_pods_are_wired_reach_each_other_and_are_deleted_cleanly() -> Result<()> {
    let lab = CniLab::new("e2n")?;
    lab.add_pool("default-ipv4-ippool", "10.244.0.0/16", 26)?;
    let pods: Vec<Netns> = (1..=3)
        .map(|i| Netns::create(&format!("e2p{i}")))
        .collect::<Result<_>>()?;
    let conf = lab.conf("node-1").json();
    let mut ips = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let path = pod.path();
        let id = format!("ctr{i}");
        let out = lab.call(
            &conf,
            &Call {
                plugin: "calico",
                command: "ADD",
                container_id: &id,
                netns: Some(&path),
                ifname: "eth0",
                args: &format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-{i}"),
            },
        )?;
        assert!(out.success(), "ADD failed: {}{}", out.stdout, out.stderr);
        let result = out.json()?;
        assert_eq!(result["cniVersion"], "1.0.0");
        assert_eq!(result["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
        assert_eq!(result["interfaces"][1]["name"], "eth0");
        assert_eq!(result["interfaces"][1]["sandbox"], path.as_str());
        assert_eq!(result["ips"][0]["interface"], 1);
        let address = result["ips"][0]["address"].as_str().unwrap_or_default();
        assert!(address.ends_with("/32"), "{address}");
        ips.push(out.ip()?);
        let addr = pod.ip(&["-o", "-4", "addr", "show", "eth0"])?;
        assert!(addr.contains(&format!("inet {}/32", ips[i])), "{addr}");
        let routes = pod.ip(&["route"])?;
        assert!(
            routes.contains("default via 169.254.1.1 dev eth0"),
            "{routes}"
        );
        assert!(
            routes.contains("169.254.1.1 dev eth0 scope link"),
            "{routes}"
        );
    }
    assert_eq!(ips.iter().collect::<BTreeSet<_>>().len(), 3);

    // Host side: cali<11 hex of sha1("default.web-0")>, MAC ee:.., route to each pod.
    let host_if = cni::names::host_veth_name("default.web-0");
    let link = lab.node.ip(&["-o", "link", "show", &host_if])?;
    assert!(link.contains("ee:ee:ee:ee:ee:ee"), "{link}");
    let routes = lab.node.ip(&["route"])?;
    assert!(
        routes.contains(&format!("{} dev {host_if} scope link", ips[0])),
        "{routes}"
    );

    // ARP for the gateway is answered by the host with ee:ee:ee:ee:ee:ee.
    let arp = pods[0].exec(
        "arping",
        &["-c", "1", "-w", "2", "-I", "eth0", "169.254.1.1"],
    )?;
    let arp_out = String::from_utf8_lossy(&arp.stdout).to_lowercase();
    assert!(arp_out.contains("ee:ee:ee:ee:ee:ee"), "{arp_out}");
    assert!(pods[0].ping(&ips[1].to_string(), 2), "pod 0 -> pod 1");
    assert!(pods[2].ping(&ips[0].to_string(), 2), "pod 2 -> pod 0");

    // One block, affine to node-1; endpoints recorded with Calico's names.
    let (blocks, wep) = lab.with_ipam(|ipam| async move {
        let blocks = ipam.affine_blocks("node-1").await?;
        let wep = datastore::Client::new(ipam.datastore().clone())
            .try_get_in::<WorkloadEndpoint>("default", "node--1-k8s-web--0-eth0")
            .await?;
        Ok((blocks, wep))
    })?;
    assert_eq!(blocks.len(), 1);
    assert!(
        ips.iter()
            .all(|ip| blocks[0].contains(&std::net::IpAddr::V4(*ip)))
    );
    let wep = wep.ok_or_else(|| anyhow::anyhow!("endpoint not recorded"))?;
    assert_eq!(wep.spec.interface_name, host_if);
    assert_eq!(wep.spec.ip_networks, vec![format!("{}/32", ips[0])]);
    assert_eq!(wep.spec.orchestrator, "k8s");

    // CHECK passes on a healthy pod and names what is wrong on a broken one.
    let path0 = pods[0].path();
    let check = |netns: &str| {
        lab.call(
            &conf,
            &Call {
                plugin: "calico",
                command: "CHECK",
                container_id: "ctr0",
                netns: Some(netns),
                ifname: "eth0",
                args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            },
        )
    };
    let ok = check(&path0)?;
    assert!(ok.success(), "CHECK: {}{}", ok.stdout, ok.stderr);
    pods[0].ip(&["route", "del", "default"])?;
    let bad = check(&path0)?;
    assert!(!bad.success());
    assert!(
        bad.json()?["details"]
            .as_str()
            .unwrap_or_default()
            .contains("default via 169.254.1.1")
    );

    // DEL frees the address, removes veth and endpoint; DEL again succeeds.
    let del = |args: &str| {
        lab.call(
            &conf,
            &Call {
                plugin: "calico",
                command: "DEL",
                container_id: "ctr0",
                netns: Some(&path0),
                ifname: "eth0",
                args,
            },
        )
    };
    let args0 = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0";
    let out = del(args0)?;
    assert!(out.success(), "DEL: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.trim().is_empty());
    assert!(!lab.cali_links()?.contains(&host_if));
    let ip0 = ips[0];
    let (info, wep) = lab.with_ipam(move |ipam| async move {
        let info = ipam.ip_info(ip0.into()).await?;
        let wep = datastore::Client::new(ipam.datastore().clone())
            .try_get_in::<WorkloadEndpoint>("default", "node--1-k8s-web--0-eth0")
            .await?;
        Ok((info, wep))
    })?;
    assert!(info.is_none(), "address still allocated: {info:?}");
    assert!(wep.is_none(), "endpoint still recorded");
    let again = del(args0)?;
    assert!(
        again.success(),
        "second DEL: {}{}",
        again.stdout,
        again.stderr
    );

    // DEL of a pod whose namespace is already gone succeeds too.
    let p1 = pods
        .into_iter()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("pod"))?;
    drop(p1);
    lab.del("node-1", None, "ctr1").or_else(|_| {
        let out = lab.call(
            &conf,
            &Call {
                plugin: "calico",
                command: "DEL",
                container_id: "ctr1",
                netns: None,
                ifname: "eth0",
                args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1",
            },
        )?;
        anyhow::ensure!(out.success(), "{}{}", out.stdout, out.stderr);
        Ok(())
    })?;
    Ok(())
}

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn the_65th_pod_on_a_node_claims_a_second_block() -> Result<()> {
    let lab = CniLab::new("e2b")?;
    lab.add_pool("default-ipv4-ippool", "10.244.0.0/16", 26)?;
    let mut pods = Vec::new();
    let mut ips = BTreeSet::new();
    for i in 0..65 {
        let pod = Netns::create(&format!("b{i}"))?;
        let ip = lab.add("node-1", &pod, &format!("c{i}"))?;
        assert!(ips.insert(ip), "{ip} handed out twice");
        pods.push(pod);
        if i == 63 {
            let blocks =
                lab.with_ipam(|ipam| async move { Ok(ipam.affine_blocks("node-1").await?) })?;
            assert_eq!(blocks.len(), 1, "64 pods fit one /26");
        }
    }
    let (blocks, affinities) = lab.with_ipam(|ipam| async move {
        Ok((
            ipam.affine_blocks("node-1").await?,
            ipam.affinities().await?,
        ))
    })?;
    assert_eq!(blocks.len(), 2, "the 65th pod claims a second block");
    assert!(
        affinities
            .iter()
            .all(|a| a.node == "node-1" && a.state == ipam::AffinityState::Confirmed)
    );
    assert_eq!(lab.cali_links()?.len(), 65);
    for (i, pod) in pods.iter().enumerate() {
        lab.del("node-1", Some(pod), &format!("c{i}"))?;
    }
    assert!(lab.cali_links()?.is_empty());
    let report = lab.with_ipam(|ipam| async move { Ok(ipam.check().await?) })?;
    assert_eq!(report.problems(), 0, "{report:?}");
    assert!(report.allocations.is_empty());
    Ok(())
}

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn a_dual_stack_pod_gets_one_address_of_each_pool_and_del_frees_both() -> Result<()> {
    let lab = CniLab::new("e26")?;
    lab.add_pool("default-ipv4-ippool", "10.244.0.0/16", 26)?;
    lab.add_pool("default-ipv6-ippool", "fd00:244::/48", 122)?;
    lab.node.sh("sysctl -qw net.ipv6.conf.all.forwarding=1")?;
    let mut conf = lab.conf("node-1");
    conf.assign_ipv6 = true;
    let conf = conf.json();
    let pods: Vec<Netns> = (1..=2)
        .map(|i| Netns::create(&format!("e26p{i}")))
        .collect::<Result<_>>()?;
    let mut v6 = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let path = pod.path();
        let out = lab.call(
            &conf,
            &Call {
                plugin: "calico",
                command: "ADD",
                container_id: &format!("ctr{i}"),
                netns: Some(&path),
                ifname: "eth0",
                args: &format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=dual-{i}"),
            },
        )?;
        assert!(out.success(), "ADD failed: {}{}", out.stdout, out.stderr);
        let result = out.json()?;
        let addresses: Vec<&str> = result["ips"]
            .as_array()
            .map(|ips| ips.iter().filter_map(|ip| ip["address"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(addresses.len(), 2, "{result}");
        assert!(addresses[0].starts_with("10.244.") && addresses[0].ends_with("/32"));
        assert!(addresses[1].starts_with("fd00:244:") && addresses[1].ends_with("/128"));
        assert_eq!(result["routes"][1]["dst"], "::/0", "{result}");
        assert_eq!(result["routes"][1]["gw"], "fe80::ecee:eeff:feee:eeee");
        let ip6 = addresses[1].trim_end_matches("/128").to_string();
        let addr = pod.ip(&["-o", "-6", "addr", "show", "eth0"])?;
        assert!(addr.contains(&format!("inet6 {ip6}/128")), "{addr}");
        v6.push(ip6);
    }
    assert!(pods[0].ping(&v6[1], 2), "pod 0 cannot ping6 pod 1");

    // Each family's block is affine to the node; the endpoint records both addresses.
    let (blocks, wep) = lab.with_ipam(|ipam| async move {
        let blocks = ipam.affine_blocks("node-1").await?;
        let wep = datastore::Client::new(ipam.datastore().clone())
            .try_get_in::<WorkloadEndpoint>("default", "node--1-k8s-dual--0-eth0")
            .await?;
        Ok((blocks, wep))
    })?;
    let prefixes: Vec<u8> = blocks.iter().map(|b| b.prefix_len()).collect();
    assert_eq!(prefixes, [26, 122], "{blocks:?}");
    let wep = wep.ok_or_else(|| anyhow::anyhow!("endpoint not recorded"))?;
    assert_eq!(wep.spec.ip_networks.len(), 2, "{:?}", wep.spec.ip_networks);
    assert_eq!(wep.spec.ip_networks[1], format!("{}/128", v6[0]));

    // CHECK reads the IPv6 side too.
    let path0 = pods[0].path();
    let call0 = |command: &'static str| Call {
        plugin: "calico",
        command,
        container_id: "ctr0",
        netns: Some(&path0),
        ifname: "eth0",
        args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=dual-0",
    };
    let ok = lab.call(&conf, &call0("CHECK"))?;
    assert!(ok.success(), "CHECK: {}{}", ok.stdout, ok.stderr);
    // DEL frees both addresses.
    let out = lab.call(&conf, &call0("DEL"))?;
    assert!(out.success(), "DEL: {}{}", out.stdout, out.stderr);
    let held =
        lab.with_ipam(|ipam| async move { Ok(ipam.ips_by_handle("k8s-pod-network.ctr0").await?) })?;
    assert!(held.is_empty(), "{held:?}");
    assert!(!lab.node.ip(&["-6", "route"])?.contains(&v6[0]));
    Ok(())
}

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn a_dual_stack_add_without_an_ipv6_pool_fails_and_keeps_no_ipv4_address() -> Result<()> {
    let lab = CniLab::new("e27")?;
    lab.add_pool("default-ipv4-ippool", "10.244.0.0/16", 26)?;
    let mut conf = lab.conf("node-1");
    conf.assign_ipv6 = true;
    let pod = Netns::create("e27p")?;
    let path = pod.path();
    let out = lab.call(
        &conf.json(),
        &Call {
            plugin: "calico",
            command: "ADD",
            container_id: "ctr",
            netns: Some(&path),
            ifname: "eth0",
            args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=dual",
        },
    )?;
    assert!(
        !out.success(),
        "ADD without an IPv6 pool succeeded: {}",
        out.stdout
    );
    let msg = out.json()?["msg"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("no IPv6 pool usable"), "{msg}");
    let allocations = lab.with_ipam(|ipam| async move { Ok(ipam.allocations().await?) })?;
    assert!(allocations.is_empty(), "{allocations:?}");
    assert!(lab.cali_links()?.is_empty());
    Ok(())
}
