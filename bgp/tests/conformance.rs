//! Replay conformance tests (holo style): each case under `tests/conformance/<case>/` is a
//! `config.json` and an `events.jsonl` of inputs; the outputs are compared line by line with
//! `expected/outputs.jsonl`. Regenerate the golden files with `CALICO_RS_UPDATE_GOLDEN=1`
//! after checking the change is wanted.
//!
//! Two kinds of case: `fsm` (one session: every input's outputs and the state after it) and
//! `rib` (peers, UPDATEs, originations, session changes: the route events and the decoded
//! UPDATEs each peer would be sent, after every `process` step).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bgp::fsm::{Input, Session, SessionConfig};
use bgp::prefix::Afi;
use bgp::rib::{PeerUp, Rib, RibConfig};
use bgp::wire::{Message, Update, UpdateCtx, decode_stream};
use bgp::{OriginAttrs, PeerConfig};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Config {
    Fsm {
        session: SessionConfig,
    },
    Rib {
        rib: RibConfig,
        peers: Vec<PeerConfig>,
    },
}

#[derive(Deserialize)]
struct FsmStep {
    #[serde(default)]
    at_ms: u64,
    input: Input,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum RibStep {
    PeerUp { peer: u16, up: PeerUp },
    PeerDown { peer: u16, keep: Vec<Afi> },
    Update { peer: u16, update: Box<Update> },
    Originate { routes: Vec<(IpNet, OriginAttrs)> },
    Withdraw { prefixes: Vec<IpNet> },
    FlushStale { peer: u16 },
    RouteRefresh { peer: u16, afi: Afi },
    Process,
}

fn run_fsm(session: SessionConfig, events: &str) -> Vec<String> {
    let start = Instant::now();
    let mut s = Session::new(session);
    let mut out = Vec::new();
    for (i, line) in events.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let step: FsmStep = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("events.jsonl line {}: {e}", i + 1));
        let outputs = s.handle(step.input, start + Duration::from_millis(step.at_ms));
        out.push(
            json!({"step": i + 1, "state": s.state(), "outputs": outputs, "last_error": s.last_error()})
                .to_string(),
        );
    }
    out
}

fn sent(rib: &mut Rib, peer: u16) -> Vec<Value> {
    let wire = rib.take_wire(peer);
    let mut v = Vec::new();
    let ctx = UpdateCtx {
        ebgp: false,
        peer_as: 0,
    };
    decode_stream(&wire, &ctx, |m| {
        if let Ok(Message::Update(u)) = m {
            v.push(serde_json::to_value(&*u).unwrap_or(Value::Null));
        }
        true
    });
    v
}

fn run_rib(cfg: RibConfig, peers: Vec<PeerConfig>, events: &str) -> Vec<String> {
    let mut rib = Rib::new(cfg);
    let idx: Vec<u16> = peers.iter().map(|p| rib.add_peer(p)).collect();
    let mut out = Vec::new();
    for (i, line) in events.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let step: RibStep = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("events.jsonl line {}: {e}", i + 1));
        // Peers are numbered from 1 in the files, in config order.
        let p = |n: u16| idx[n as usize - 1];
        match step {
            RibStep::PeerUp { peer, up } => rib.peer_up(p(peer), up),
            RibStep::PeerDown { peer, keep } => rib.peer_down(p(peer), &keep),
            RibStep::Update { peer, update } => rib.apply_update(p(peer), *update),
            RibStep::Originate { routes } => rib.originate(routes),
            RibStep::Withdraw { prefixes } => rib.withdraw_local(prefixes),
            RibStep::FlushStale { peer } => rib.flush_stale(p(peer), None),
            RibStep::RouteRefresh { peer, afi } => rib.route_refresh(p(peer), afi),
            RibStep::Process => {
                rib.process();
            }
        }
        let events = rib.take_events();
        let mut to: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (n, &ix) in idx.iter().enumerate() {
            let u = sent(&mut rib, ix);
            if !u.is_empty() {
                to.insert(format!("peer{}", n + 1), u);
            }
        }
        if !events.is_empty() || !to.is_empty() {
            out.push(json!({"step": i + 1, "events": events, "sent": to}).to_string());
        }
    }
    out
}

fn run_case(dir: &Path) {
    let cfg: Config = serde_json::from_str(
        &std::fs::read_to_string(dir.join("config.json")).expect("config.json"),
    )
    .unwrap_or_else(|e| panic!("{}: config.json: {e}", dir.display()));
    let events = std::fs::read_to_string(dir.join("events.jsonl")).expect("events.jsonl");
    let lines = match cfg {
        Config::Fsm { session } => run_fsm(session, &events),
        Config::Rib { rib, peers } => run_rib(rib, peers, &events),
    };
    let actual = lines.join("\n") + "\n";
    let golden = dir.join("expected").join("outputs.jsonl");
    if std::env::var("CALICO_RS_UPDATE_GOLDEN").is_ok() {
        std::fs::create_dir_all(golden.parent().expect("dir")).expect("mkdir");
        std::fs::write(&golden, &actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    for (n, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        assert_eq!(
            a,
            e,
            "{}: output line {} differs (CALICO_RS_UPDATE_GOLDEN=1 regenerates)",
            dir.display(),
            n + 1
        );
    }
    assert_eq!(
        actual.lines().count(),
        expected.lines().count(),
        "{}: output line count differs (CALICO_RS_UPDATE_GOLDEN=1 regenerates)",
        dir.display()
    );
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/conformance")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    v.sort();
    v
}

#[test]
fn every_conformance_case_replays_to_its_golden_outputs() {
    let cases = cases();
    assert!(cases.len() >= 4, "conformance cases missing");
    for c in cases {
        run_case(&c);
    }
}
