//! A pod's sandbox is recreated: the runtime ADDs the new container, then the DEL for the
//! old one comes late. The veth and the WorkloadEndpoint are named after the pod, so a DEL
//! that trusted the names would unwire the new container; it must release only the old
//! container's address and leave the new one fully wired (Calico checks the endpoint's
//! containerID the same way). Needs root: `cargo test -p cni --test recreated_sandbox --
//! --ignored`.

mod common;

use std::net::Ipv4Addr;

use anyhow::{Result, bail};
use common::CniLab;
use datastore::model::WorkloadEndpoint;
use lab::Netns;
use lab::cni::{Call, CniOutput};

const POD_ARGS: &str = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web";

fn call(lab: &CniLab, command: &'static str, container: &str, pod: &Netns) -> Result<CniOutput> {
    let path = pod.path();
    lab.call(
        &lab.conf("node-1").json(),
        &Call {
            plugin: "calico",
            command,
            container_id: container,
            netns: Some(&path),
            ifname: "eth0",
            args: POD_ARGS,
        },
    )
}

fn must(out: CniOutput, what: &str) -> Result<CniOutput> {
    if !out.success() {
        bail!("{what} failed: {}{}", out.stdout, out.stderr);
    }
    Ok(out)
}

/// The container id the pod's endpoint records, if there is an endpoint.
fn endpoint_container(lab: &CniLab) -> Result<Option<String>> {
    lab.with_store(|ds| async move {
        let wep = datastore::Client::new(ds)
            .list::<WorkloadEndpoint>()
            .await?
            .items
            .into_iter()
            .find(|w| w.spec.pod == "web");
        Ok(wep.map(|w| w.spec.container_id))
    })
}

/// The IPAM handle that holds `ip`, if it is allocated.
fn handle_of(lab: &CniLab, ip: Ipv4Addr) -> Result<Option<String>> {
    lab.with_ipam(
        move |ipam| async move { Ok(ipam.ip_info(ip.into()).await?.and_then(|a| a.handle)) },
    )
}

#[test]
#[ignore = "needs root netns: cargo test -p cni --test recreated_sandbox -- --ignored"]
fn a_late_del_for_the_old_sandbox_leaves_the_new_container_wired() -> Result<()> {
    let lab = CniLab::new("sbx")?;
    lab.add_pool("default-ipv4-ippool", "10.244.0.0/16", 26)?;
    let old_sandbox = Netns::create("sbxold")?;
    let new_sandbox = Netns::create("sbxnew")?;
    let host_if = cni::names::host_veth_name("shop.web");

    let old_ip = must(call(&lab, "ADD", "ctr-old", &old_sandbox)?, "ADD old")?.ip()?;
    let new_ip = must(call(&lab, "ADD", "ctr-new", &new_sandbox)?, "ADD new")?.ip()?;
    assert_ne!(old_ip, new_ip);
    // The runtime removes the old sandbox, then its DEL arrives (netns path gone or not).
    let old_path = old_sandbox.path();
    drop(old_sandbox);
    let del = lab.call(
        &lab.conf("node-1").json(),
        &Call {
            plugin: "calico",
            command: "DEL",
            container_id: "ctr-old",
            netns: Some(&old_path),
            ifname: "eth0",
            args: POD_ARGS,
        },
    )?;
    must(del, "late DEL of the old container")?;

    // The new container is still fully wired: veth, route, endpoint, address, CHECK.
    let link = lab.node.ip(&["-o", "link", "show", &host_if])?;
    assert!(link.contains("alias ctr-new"), "{link}");
    let routes = lab.node.ip(&["route"])?;
    assert!(
        routes.contains(&format!("{new_ip} dev {host_if} scope link")),
        "{routes}"
    );
    assert_eq!(endpoint_container(&lab)?.as_deref(), Some("ctr-new"));
    let handle = handle_of(&lab, new_ip)?;
    assert!(
        handle.as_deref().is_some_and(|h| h.ends_with(".ctr-new")),
        "{new_ip} held by {handle:?}"
    );
    assert_eq!(
        handle_of(&lab, old_ip)?,
        None,
        "the old container's address is released"
    );
    must(call(&lab, "CHECK", "ctr-new", &new_sandbox)?, "CHECK new")?;
    let arp = new_sandbox.exec(
        "arping",
        &["-c", "1", "-w", "2", "-I", "eth0", "169.254.1.1"],
    )?;
    assert!(
        String::from_utf8_lossy(&arp.stdout)
            .to_lowercase()
            .contains("ee:ee:ee:ee:ee:ee"),
        "the new pod's gateway still answers: {}",
        String::from_utf8_lossy(&arp.stdout)
    );

    // The new container's own DEL removes everything.
    must(call(&lab, "DEL", "ctr-new", &new_sandbox)?, "DEL new")?;
    assert!(!lab.cali_links()?.contains(&host_if));
    assert_eq!(endpoint_container(&lab)?, None);
    let report = lab.with_ipam(|ipam| async move { Ok(ipam.check().await?) })?;
    assert!(report.allocations.is_empty(), "{:?}", report.allocations);
    assert_eq!(report.problems(), 0, "{report:?}");
    Ok(())
}

#[test]
#[ignore = "needs root netns: cargo test -p cni --test recreated_sandbox -- --ignored"]
fn a_late_del_during_the_new_containers_add_leaves_its_veth() -> Result<()> {
    let lab = CniLab::new("sbxr")?;
    lab.add_pool("default-ipv4-ippool", "10.244.0.0/16", 26)?;
    let old_sandbox = Netns::create("sbxrold")?;
    let new_sandbox = Netns::create("sbxrnew")?;
    let host_if = cni::names::host_veth_name("shop.web");
    must(call(&lab, "ADD", "ctr-old", &old_sandbox)?, "ADD old")?;
    let old_path = old_sandbox.path();
    drop(old_sandbox);
    // The kernel removes a namespace's devices a moment after the namespace goes.
    assert!(lab::wait_until(std::time::Duration::from_secs(10), || {
        lab.cali_links().is_ok_and(|l| !l.contains(&host_if))
    }));
    // The new container's ADD is part-way: its veth exists, without its alias yet (the
    // kernel takes none at creation), and the endpoint is still the old container's.
    lab.node.ip(&[
        "link",
        "add",
        &host_if,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        new_sandbox.name(),
    ])?;
    assert_eq!(endpoint_container(&lab)?.as_deref(), Some("ctr-old"));
    let del = lab.call(
        &lab.conf("node-1").json(),
        &Call {
            plugin: "calico",
            command: "DEL",
            container_id: "ctr-old",
            netns: Some(&old_path),
            ifname: "eth0",
            args: POD_ARGS,
        },
    )?;
    must(del, "late DEL of the old container")?;
    assert!(
        lab.cali_links()?.contains(&host_if),
        "the late DEL removed the new container's veth"
    );
    assert_eq!(endpoint_container(&lab)?, None, "the old endpoint is gone");
    Ok(())
}
