//! The standalone example (`examples/speaker.rs`) as a user would run it, against BIRD.

use std::time::Duration;

use anyhow::{Context, Result};
use lab::bgp_peers::{NeighborSpec, Router, RouterKind, RouterSpec};

use super::common::*;

fn example_binary() -> Result<std::path::PathBuf> {
    // target/<profile>/deps/interop-<hash> → target/<profile>/examples/speaker
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("target dir")?;
    Ok(dir.join("examples").join("speaker"))
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
#[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
fn the_speaker_example_prints_peer_best_and_withdraw_lines() {
    run().expect("scenario");
}

fn run() -> Result<()> {
    let lab = Lab::new(2)?;
    let mut bird = Router::start(
        RouterKind::Bird,
        &lab.nodes[1],
        &lab.path("r"),
        RouterSpec {
            router_id: "10.0.0.2".into(),
            ipv6: None,
            asn: 65001,
            neighbors: vec![NeighborSpec::new("10.0.0.1", 64512)],
            routes4: vec!["10.20.0.0/24".into()],
            routes6: vec![],
            install_routes: false,
            bfd: None,
        },
    )?;
    let bin = example_binary()?;
    let out = lab.path("speaker.jsonl");
    let bin_s = bin.to_string_lossy().into_owned();
    // stdout (JSON lines) and stderr (logs) both go to the log file; only JSON lines parse.
    let _speaker = lab.nodes[0].spawn(
        &bin_s,
        &[
            "--as",
            "64512",
            "--router-id",
            "10.0.0.1",
            "--listen",
            "0.0.0.0:179",
            "--peer",
            "10.0.0.2,65001,hold=9,keepalive=3,connect-retry=1",
            "--announce",
            "192.168.50.0/24",
        ],
        &Default::default(),
        &out,
    )?;
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| lines(&out).iter().any(f);
    eventually("peer Established line", Duration::from_secs(30), || {
        has(&|v| v["event"] == "peer" && v["state"] == "Established" && v["peer"] == "10.0.0.2")
    })?;
    eventually("best line", Duration::from_secs(30), || {
        has(&|v| {
            v["event"] == "best"
                && v["prefix"] == "10.20.0.0/24"
                && v["next_hop"] == "10.0.0.2"
                && v["as_path"] == serde_json::json!([65001])
        })
    })?;
    eventually("our route in BIRD", Duration::from_secs(30), || {
        bird.learned_prefixes().contains("192.168.50.0/24")
    })?;
    bird.set_routes(&[], &[])?;
    eventually("withdraw line", Duration::from_secs(30), || {
        has(&|v| v["event"] == "withdraw" && v["prefix"] == "10.20.0.0/24")
    })
    .with_context(|| std::fs::read_to_string(&out).unwrap_or_default())?;
    Ok(())
}
