//! CNI ADD and DEL latency, ours (`calico` + `calico-ipam`, on etcd and on the embedded
//! store) against containernetworking's `ptp` + `host-local` (/usr/lib/cni), on the same
//! machine in the same run: 200 pods (lab namespaces) inside one lab node namespace,
//! sequential and 32 in flight; median and p99 per call, wall time per batch. Printed, not
//! asserted. Needs root:
//!
//!     cargo bench -p cni --bench cni_latency
//!
//! Every call is a plugin process started inside the node's namespace, as a runtime on
//! that node would start it, so process start-up is part of every figure, for both.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lab::Netns;
use lab::cni::{CalicoConf, Call, CniBin, Store};
use lab::etcd::EtcdServer;

const PODS: usize = 200;
const PARALLEL: usize = 32;

/// One plugin set under test.
struct Subject {
    label: String,
    cni_path: PathBuf,
    plugin: &'static str,
    conf: String,
}

/// Latencies of one batch.
struct Batch {
    calls: Vec<Duration>,
    wall: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn call(node: &Netns, s: &Subject, command: &str, id: &str, netns: &str) -> Result<Duration> {
    let started = Instant::now();
    let out = lab::cni::run_in(
        Some(node),
        &s.cni_path,
        &s.conf,
        &Call {
            plugin: s.plugin,
            command,
            container_id: id,
            netns: Some(netns),
            ifname: "eth0",
            args: "",
        },
    )?;
    let took = started.elapsed();
    if !out.success() {
        bail!("{} {command} {id}: {}{}", s.label, out.stdout, out.stderr);
    }
    Ok(took)
}

/// Runs `command` for every pod with `width` calls in flight.
fn batch(node: &Netns, s: &Subject, pods: &[Netns], command: &str, width: usize) -> Result<Batch> {
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Result<Duration>>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..width {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut g = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *g;
                        *g += 1;
                        i
                    };
                    if i >= pods.len() {
                        return;
                    }
                    let r = call(node, s, command, &format!("bench{i:04}"), &pods[i].path());
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                }
            });
        }
    });
    let wall = started.elapsed();
    let mut calls = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    calls.sort();
    Ok(Batch { calls, wall })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} x {cpu}, Linux {}", kernel.trim())
}

/// Creates the default pool through the plugin's own datastore code, inside the node.
fn create_pool(node: &Netns, conf_json: String) -> Result<()> {
    let file = cni::netns::open(&node.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(cni::netns::run_in(file, move || async move {
        let conf = cni::config::NetConf::parse(conf_json.as_bytes())?;
        let ds = cni::store::connect(&conf).await?;
        let pool = datastore::model::IPPool::new(
            "default-ipv4-ippool",
            datastore::model::IPPoolSpec::with_cidr("10.244.0.0/16"),
        );
        datastore::Client::new(ds).create(pool).await?;
        Ok(())
    }))
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn run() -> Result<()> {
    if !lab::netns::is_root() {
        println!(
            "bench_cni needs root (network namespaces): sudo cargo bench -p cni --bench cni_latency"
        );
        return Ok(());
    }
    if !Path::new("/usr/lib/cni/ptp").exists() {
        bail!("/usr/lib/cni/ptp missing: apt-get install containernetworking-plugins");
    }
    lab::remove_leftovers();
    let node = Netns::create("bn")?;
    lab::cni::add_default_route(&node)?;
    node.sh("sysctl -qw net.ipv4.ip_forward=1")?;
    let etcd = EtcdServer::start_in(&node, Ipv4Addr::LOCALHOST.into())?;
    let dir = tempfile::Builder::new().prefix("crs-bench-cni").tempdir()?;
    let ours = CniBin::calico(
        env!("CARGO_BIN_EXE_calico").as_ref(),
        env!("CARGO_BIN_EXE_calico-ipam").as_ref(),
    )?;

    let mut etcd_conf = CalicoConf::new("bench-node", Store::Etcd(etcd.endpoint().to_string()));
    let mut local_conf = CalicoConf::new("bench-node", Store::Local(dir.path().join("calico.db")));
    for c in [&mut etcd_conf, &mut local_conf] {
        c.ipam_lock_file = Some(dir.path().join("ipam.lock"));
    }
    create_pool(&node, etcd_conf.json())?;
    create_pool(&node, local_conf.json())?;
    let ptp_conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "bench-ptp", "type": "ptp", "ipMasq": false, "mtu": 1500,
        "ipam": {"type": "host-local", "subnet": "10.250.0.0/16",
                 "dataDir": dir.path().join("host-local"), "routes": [{"dst": "0.0.0.0/0"}]}
    })
    .to_string();
    let subjects = [
        Subject {
            label: "calico + calico-ipam (etcd)".into(),
            cni_path: ours.path().to_path_buf(),
            plugin: "calico",
            conf: etcd_conf.json(),
        },
        Subject {
            label: "calico + calico-ipam (local store)".into(),
            cni_path: ours.path().to_path_buf(),
            plugin: "calico",
            conf: local_conf.json(),
        },
        Subject {
            label: "ptp + host-local".into(),
            cni_path: PathBuf::from("/usr/lib/cni"),
            plugin: "ptp",
            conf: ptp_conf,
        },
    ];
    let pods: Vec<Netns> = (0..PODS)
        .map(|i| Netns::create(&format!("bp{i}")))
        .collect::<Result<_>>()
        .context("creating pod namespaces")?;

    println!(
        "CNI ADD/DEL latency, {PODS} pods, one lab node; machine: {}",
        machine()
    );
    println!(
        "{:<36} {:<11} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "plugins", "mode", "ADD p50", "ADD p99", "DEL p50", "DEL p99", "ADD wall", "DEL wall"
    );
    let mut medians: BTreeMap<(String, usize), (Duration, Duration)> = BTreeMap::new();
    for width in [1, PARALLEL] {
        for s in &subjects {
            // One untimed warm-up pod (page cache, etcd connection paths).
            call(&node, s, "ADD", "warmup", &pods[0].path())?;
            call(&node, s, "DEL", "warmup", &pods[0].path())?;
            let add = batch(&node, s, &pods, "ADD", width)?;
            let del = batch(&node, s, &pods, "DEL", width)?;
            let mode = if width == 1 {
                "sequential".to_string()
            } else {
                format!("{width}-way")
            };
            println!(
                "{:<36} {:<11} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
                s.label,
                mode,
                ms(percentile(&add.calls, 50.0)),
                ms(percentile(&add.calls, 99.0)),
                ms(percentile(&del.calls, 50.0)),
                ms(percentile(&del.calls, 99.0)),
                ms(add.wall),
                ms(del.wall),
            );
            medians.insert(
                (s.label.clone(), width),
                (percentile(&add.calls, 50.0), percentile(&del.calls, 50.0)),
            );
        }
    }
    println!("(milliseconds; p50/p99 per call, wall = the whole batch of {PODS})");
    for width in [1, PARALLEL] {
        let base = medians.get(&("ptp + host-local".to_string(), width));
        let ours = medians.get(&("calico + calico-ipam (etcd)".to_string(), width));
        if let (Some(b), Some(o)) = (base, ours) {
            println!(
                "ratio calico(etcd)/ptp, {}: ADD p50 {:.2}x, DEL p50 {:.2}x",
                if width == 1 {
                    "sequential".into()
                } else {
                    format!("{width}-way")
                },
                o.0.as_secs_f64() / b.0.as_secs_f64(),
                o.1.as_secs_f64() / b.1.as_secs_f64()
            );
        }
    }
    drop(pods);
    drop(etcd);
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_cni failed: {e:#}");
        std::process::exit(1);
    }
}
