//! Bad input gets a CNI error object on stdout with the spec's code, a non-zero exit, and
//! leaves nothing behind: no address, no veth, no endpoint.
//! Needs root: `cargo test -p cni -- --ignored`.

mod common;

use anyhow::Result;
use common::CniLab;
use lab::Netns;
use lab::cni::{Call, CniOutput};

fn add<'a>(netns: Option<&'a str>, id: &'a str) -> Call<'a> {
    Call {
        plugin: "calico",
        command: "ADD",
        container_id: id,
        netns,
        ifname: "eth0",
        args: "",
    }
}

/// Asserts a CNI error with `code` whose message contains `needle`.
fn assert_error(out: &CniOutput, code: u64, needle: &str) -> Result<()> {
    assert!(!out.success(), "expected failure, got {}", out.stdout);
    let v = out.json()?;
    assert_eq!(v["code"], code, "{v}");
    assert!(v["cniVersion"].is_string(), "{v}");
    let text = format!("{} {}", v["msg"], v["details"]);
    assert!(text.contains(needle), "{needle:?} not in {text}");
    Ok(())
}

/// Nothing allocated, wired or recorded.
fn assert_nothing_left(lab: &CniLab, pod: &Netns) -> Result<()> {
    assert!(lab.cali_links()?.is_empty(), "{:?}", lab.cali_links()?);
    assert!(!pod.ip(&["link", "show"])?.contains("eth0"));
    let (allocs, handles, weps) = lab.with_store(|ds| async move {
        let allocs = ipam::Ipam::new(ds.clone()).allocations().await?;
        let handles = ds
            .list(&datastore::keys::handles_prefix())
            .await?
            .items
            .len();
        let weps = ds
            .list(&datastore::keys::resource_prefix("workloadendpoints"))
            .await?
            .items
            .len();
        Ok((allocs, handles, weps))
    })?;
    assert!(allocs.is_empty(), "{allocs:?}");
    assert_eq!((handles, weps), (0, 0));
    Ok(())
}

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn bad_input_is_a_cni_error_and_leaves_nothing_behind() -> Result<()> {
    let lab = CniLab::new("bad")?;
    lab.add_pool("default-ipv4-ippool", "10.244.0.0/16", 26)?;
    lab.add_pool("tiny", "10.99.0.0/30", 30)?;
    let pod = Netns::create("badp")?;
    let path = pod.path();
    let conf = lab.conf("node-1");

    // Malformed config: decode failure (6).
    let out = lab.call(
        "{\"cniVersion\": \"1.0.0\", \"name\": ",
        &add(Some(&path), "c1"),
    )?;
    assert_error(&out, 6, "decoding")?;
    // Missing network name: invalid config (7).
    let out = lab.call(
        r#"{"cniVersion":"1.0.0","type":"calico"}"#,
        &add(Some(&path), "c1"),
    )?;
    assert_error(&out, 7, "missing network name")?;
    // Unsupported version (1).
    let out = lab.call(
        &conf.json().replace("\"1.0.0\"", "\"0.2.0\""),
        &add(Some(&path), "c1"),
    )?;
    assert_error(&out, 1, "incompatible CNI versions")?;
    assert_nothing_left(&lab, &pod)?;

    // Unknown pool: invalid config (7), nothing allocated.
    let mut unknown = conf.clone();
    unknown.ipv4_pools = vec!["no-such-pool".into()];
    let out = lab.call(&unknown.json(), &add(Some(&path), "c2"))?;
    assert_error(&out, 7, "no-such-pool")?;
    assert_nothing_left(&lab, &pod)?;

    // Missing CNI_NETNS: invalid environment (4), named.
    let out = lab.call(&conf.json(), &add(None, "c3"))?;
    assert_error(&out, 4, "CNI_NETNS")?;
    // A namespace that does not exist: unknown container (3), before any allocation.
    let out = lab.call(
        &conf.json(),
        &add(Some("/run/netns/crs-does-not-exist"), "c3"),
    )?;
    assert_error(&out, 3, "crs-does-not-exist")?;
    assert_nothing_left(&lab, &pod)?;

    // A container id with path characters: invalid environment (4).
    for id in ["../../etc/passwd", "a/b", "-rf"] {
        let out = lab.call(&conf.json(), &add(Some(&path), id))?;
        assert_error(&out, 4, "invalid characters in containerID")?;
    }
    assert_nothing_left(&lab, &pod)?;

    // Exhausted pool: the tiny pool is full; IPAM's message names it (100).
    lab.with_ipam(|ipam| async move {
        for i in 0..4 {
            let args = ipam::AutoAssignArgs {
                pools: vec!["tiny".into()],
                ..ipam::AutoAssignArgs::one(&format!("filler{i}"), "node-1")
            };
            ipam.auto_assign(&args).await?;
        }
        Ok(())
    })?;
    let mut tiny = conf.clone();
    tiny.ipv4_pools = vec!["tiny".into()];
    let out = lab.call(&tiny.json(), &add(Some(&path), "c4"))?;
    assert_error(&out, 100, "No IPs available in pools: [10.99.0.0/30]")?;
    let (count, handle) = lab.with_store(|ds| async move {
        let count = ipam::Ipam::new(ds.clone()).allocations().await?.len();
        let handle = ds
            .get(&datastore::keys::handle("k8s-pod-network.c4"))
            .await?
            .is_some();
        Ok((count, handle))
    })?;
    assert_eq!(
        (count, handle),
        (4, false),
        "only the fillers are allocated"
    );
    assert!(lab.cali_links()?.is_empty());

    // An unreachable datastore: try again later (11), before anything is created.
    let mut down = conf.clone();
    down.store = lab::cni::Store::Etcd("http://127.0.0.1:1".into());
    let out = lab.call(&down.json(), &add(Some(&path), "c6"))?;
    assert_error(&out, 11, "127.0.0.1:1")?;
    assert!(lab.cali_links()?.is_empty());

    // An IPAM plugin that is not on CNI_PATH: invalid config (7), nothing allocated.
    let out = lab.call(
        &conf.json().replace("calico-ipam", "host-local-missing"),
        &add(Some(&path), "c5"),
    )?;
    assert_error(&out, 7, "failed to find plugin")?;
    assert!(lab.cali_links()?.is_empty());

    // calico-ipam runs inside the calico process, but only when it is installed, as a
    // runtime (and Calico) expect: a CNI_PATH without it is the same error.
    let only_calico = lab::cni::CniBin::new(&[("calico", env!("CARGO_BIN_EXE_calico").as_ref())])?;
    let out = lab::cni::run(
        &lab.node,
        &only_calico,
        &conf.json(),
        &add(Some(&path), "c7"),
    )?;
    assert_error(&out, 7, r#"failed to find plugin \"calico-ipam\""#)?;
    assert!(lab.cali_links()?.is_empty());
    let held =
        lab.with_ipam(|ipam| async move { Ok(ipam.ips_by_handle("k8s-pod-network.c7").await?) })?;
    assert!(held.is_empty(), "allocated without calico-ipam: {held:?}");

    // A DEL without calico-ipam on CNI_PATH still takes the pod's veth down first, then
    // fails naming the plugin; with it, the DEL releases the address.
    lab.add("node-1", &pod, "c8")?;
    let del = Call {
        command: "DEL",
        ..add(Some(&path), "c8")
    };
    let out = lab::cni::run(&lab.node, &only_calico, &conf.json(), &del)?;
    assert_error(&out, 7, r#"failed to find plugin \"calico-ipam\""#)?;
    assert!(lab.cali_links()?.is_empty(), "the veth outlived the DEL");
    let out = lab.call(&conf.json(), &del)?;
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    let held =
        lab.with_ipam(|ipam| async move { Ok(ipam.ips_by_handle("k8s-pod-network.c8").await?) })?;
    assert!(held.is_empty(), "not released: {held:?}");
    Ok(())
}

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn a_failed_wiring_rolls_the_allocation_back() -> Result<()> {
    let lab = CniLab::new("rbk")?;
    lab.add_pool("default-ipv4-ippool", "10.244.0.0/16", 26)?;
    let pod = Netns::create("rbkp")?;
    // The pod already has an eth0: creating the veth's pod end fails after IPAM ADD.
    pod.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ])?;
    let path = pod.path();
    let out = lab.call(&lab.conf("node-1").json(), &add(Some(&path), "c1"))?;
    assert_error(&out, 101, "veth")?;
    assert!(lab.cali_links()?.is_empty());
    let allocs = lab.with_ipam(|ipam| async move { Ok(ipam.allocations().await?) })?;
    assert!(allocs.is_empty(), "allocation not rolled back: {allocs:?}");
    Ok(())
}

/// Sets `ClusterInformation default`'s `datastoreReady` (what `calicoctl datastore
/// migrate lock` / `unlock` do).
fn set_datastore_ready(lab: &CniLab, ready: bool) -> Result<()> {
    lab.with_store(move |ds| async move {
        use datastore::model::{ClusterInformation, ClusterInformationSpec};
        let client = datastore::Client::new(ds);
        let spec = ClusterInformationSpec {
            datastore_ready: Some(ready),
            ..ClusterInformationSpec::default()
        };
        let info = ClusterInformation::new("default", spec);
        client
            .apply(info)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    })
}

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn a_locked_datastore_is_try_again_later_and_nothing_is_allocated() -> Result<()> {
    let lab = CniLab::new("lock")?;
    lab.add_pool("default-ipv4-ippool", "10.244.0.0/16", 26)?;
    let pod = Netns::create("lockp")?;
    let path = pod.path();
    let conf = lab.conf("node-1").json();
    set_datastore_ready(&lab, false)?;
    for plugin in ["calico", "calico-ipam"] {
        let call = Call {
            plugin,
            ..add(Some(&path), "c1")
        };
        let out = lab.call(&conf, &call)?;
        assert_error(
            &out,
            11,
            "Calico is currently not ready to process requests",
        )?;
        assert_error(&out, 11, "calicoctl datastore migrate unlock")?;
    }
    assert_nothing_left(&lab, &pod)?;
    // A DEL waits for the unlock too (the runtime retries it).
    let out = lab.call(
        &conf,
        &Call {
            command: "DEL",
            ..add(Some(&path), "c1")
        },
    )?;
    assert_error(&out, 11, "not ready")?;
    set_datastore_ready(&lab, true)?;
    let out = lab.call(&conf, &add(Some(&path), "c1"))?;
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    Ok(())
}

/// Every file under `dir` (none when it does not exist).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
#[ignore = "needs root netns: cargo test -p cni -- --ignored"]
fn a_locked_datastore_starts_no_ipam_that_does_not_check_the_lock() -> Result<()> {
    // host-local checks no datastore: the calico plugin must not start it while locked.
    // (Had it run and been released, its dataDir would keep last_reserved_ip.0.)
    let host_local = std::path::Path::new("/usr/lib/cni/host-local");
    anyhow::ensure!(
        host_local.exists(),
        "{} missing: apt-get install containernetworking-plugins",
        host_local.display()
    );
    let lab = CniLab::new("lockh")?;
    let pod = Netns::create("lockhp")?;
    let path = pod.path();
    let bin = lab::cni::CniBin::new(&[
        ("calico", env!("CARGO_BIN_EXE_calico").as_ref()),
        ("host-local", host_local),
    ])?;
    let data_dir = lab.dir.path().join("host-local");
    let mut conf: serde_json::Value = serde_json::from_str(&lab.conf("node-1").json())?;
    conf["ipam"] = serde_json::json!({
        "type": "host-local",
        "subnet": "10.250.0.0/24",
        "dataDir": data_dir,
    });
    let conf = conf.to_string();
    set_datastore_ready(&lab, false)?;
    let out = lab::cni::run(&lab.node, &bin, &conf, &add(Some(&path), "c1"))?;
    assert_error(&out, 11, "not ready")?;
    assert!(
        files_under(&data_dir).is_empty(),
        "host-local ran: {:?}",
        files_under(&data_dir)
    );
    assert!(lab.cali_links()?.is_empty());
    // Unlocked, the same ADD goes through host-local.
    set_datastore_ready(&lab, true)?;
    let out = lab::cni::run(&lab.node, &bin, &conf, &add(Some(&path), "c1"))?;
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    assert!(!files_under(&data_dir).is_empty());
    Ok(())
}
