//! Route-ingestion benchmark: our speaker against BIRD 2, same feed, same machine.
//!
//! ```text
//! cargo run --release -p bgp --example bench_ingest            # needs root (namespaces)
//! cargo run --release -p bgp --example bench_ingest -- --routes 100000 --reps 5
//! ```
//!
//! Topology (network namespaces on one bridge, nothing in the root namespace): the device
//! under test (DUT) at 10.0.0.1, AS 64512; the feeder at 10.0.0.2, AS 65002; for the reflect
//! case a sink at 10.0.0.3, AS 65003. The feeder is ours: the whole table is encoded before
//! the session starts (fully packed UPDATEs, 8 attribute sets of 1024-prefix runs, half /24s
//! from 100.0.0.0, half /32s from 120.0.0.0, like `shared/tools/bgpfeed`), then written with
//! one `write_all` the moment the session is Established, so the DUT is the bottleneck (the
//! report shows how long the feeder's write took: it blocks only while the DUT has not read).
//!
//! Measured per run: time from Established (feeder side) to all routes in the DUT's Loc-RIB
//! (ours: the DUT process counts best-path events and timestamps the last one; BIRD: its
//! protocol's `imported` counter polled every 5 ms, O(1) per poll), routes/s, DUT CPU seconds
//! (utime+stime from /proc, 10 ms ticks), peak RSS (VmHWM) and bytes per route ((VmHWM −
//! RSS before the feed) / routes). Reflect: from Established to the sink holding every route.
//! No kernel programming on either side.
//!
//! Our DUT runs as a separate process (this binary, `--dut`) so its CPU and memory are its
//! own.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use bgp::prefix::{Afi, Prefix4};
use bgp::wire::encode::{encode_path_attrs, push_announce4, push_end_of_rib, push_keepalive};
use bgp::wire::{OpenParams, Origin, PathAttrs, check_header, encode_open};
use bgp::{PeerConfig, Policy, RouteEvent, Speaker, SpeakerConfig};
use clap::Parser;
use lab::{Daemon, Netns, veth};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Route counts to run (default: 1000000 and 100000).
    #[arg(long = "routes", value_delimiter = ',')]
    routes: Vec<usize>,
    /// Repetitions per cell (median reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Skip BIRD.
    #[arg(long)]
    no_bird: bool,
    /// Skip the reflect case.
    #[arg(long)]
    no_reflect: bool,
    /// Our DUT consumes one event per route (`Speaker::start`, what the agent uses today)
    /// instead of batches (`Speaker::start_batched`).
    #[arg(long)]
    per_event: bool,
    /// Internal: run as the device under test.
    #[arg(long, hide = true)]
    dut: bool,
    /// Internal: DUT has a sink peer.
    #[arg(long, hide = true)]
    sink: bool,
}

const DUT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const FEEDER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SINK: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const SETS: usize = 8;

// ===== the feed =====

/// The whole table as packed UPDATEs plus End-of-RIB, encoded by our own encoder.
fn build_feed(n: usize) -> Result<Vec<u8>> {
    let half = n / 2;
    let prefix = |i: usize| {
        if i < half {
            Prefix4::from_bits(0x6400_0000 + ((i as u32) << 8), 24)
        } else {
            Prefix4::from_bits(0x7800_0000 + (i - half) as u32, 32)
        }
    };
    let mut attrs = Vec::new();
    for g in 0..SETS as u32 {
        let mut path = vec![65002];
        path.extend(std::iter::repeat_n(64600 + g, 1 + (g % 3) as usize));
        path.push(64900 + g);
        let a = PathAttrs {
            origin: Origin::Igp,
            as_path: Arc::from(path),
            next_hop: Some(IpAddr::V4(FEEDER)),
            communities: vec![(65002 << 16) | g, (65002 << 16) | (1000 + g % 2)],
            ..PathAttrs::default()
        };
        attrs.push(encode_path_attrs(&a, Afi::Ipv4)?);
    }
    let mut out = Vec::with_capacity(n * 5);
    let mut i = 0;
    while i < n {
        let end = (i + 1024).min(n);
        let g = (i / 1024) % SETS;
        let run: Vec<Prefix4> = (i..end).filter_map(prefix).collect();
        push_announce4(&mut out, &attrs[g], &run)?;
        i = end;
    }
    push_end_of_rib(&mut out, Afi::Ipv4);
    Ok(out)
}

fn enter(ns_path: &str) -> Result<()> {
    let f = File::open(ns_path).with_context(|| format!("opening {ns_path}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
    Ok(())
}

fn connect(to: SocketAddr) -> Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => bail!("connect {to}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads messages until the OPEN/KEEPALIVE exchange is done; returns leftover bytes.
fn handshake(s: &mut TcpStream, asn: u32, id: Ipv4Addr) -> Result<Vec<u8>> {
    s.write_all(&encode_open(&OpenParams {
        asn,
        hold_time: 240,
        router_id: id,
        families: vec![Afi::Ipv4],
        graceful_restart: None,
    })?)?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut got_open = false;
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            bail!("DUT closed the session");
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some((_, len))) = check_header(&buf) {
            let t = buf[18];
            match t {
                1 => {
                    got_open = true;
                    let mut ka = Vec::new();
                    push_keepalive(&mut ka);
                    s.write_all(&ka)?;
                }
                4 if got_open => return Ok(buf[len..].to_vec()),
                3 => bail!("NOTIFICATION {}/{}", buf[19], buf[20]),
                _ => {}
            }
            buf.drain(..len);
        }
    }
}

struct FeedResult {
    established: SystemTime,
    written: Duration,
}

/// The feeder: session up, then the whole feed in one write. Keeps the session alive
/// (reading, answering nothing but KEEPALIVEs) until `stop`.
fn run_feeder(
    ns_path: String,
    feed: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<FeedResult>> {
    std::thread::spawn(move || {
        enter(&ns_path)?;
        let mut s = connect(SocketAddr::new(IpAddr::V4(DUT), 179))?;
        s.set_nodelay(true)?;
        handshake(&mut s, 65002, FEEDER)?;
        let established = SystemTime::now();
        let t = Instant::now();
        s.write_all(&feed)?;
        let written = t.elapsed();
        let mut r = s.try_clone()?;
        r.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut sink = vec![0u8; 65536];
        let mut last_ka = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(0) = r.read(&mut sink) {
                break;
            }
            if last_ka.elapsed() > Duration::from_secs(30) {
                let mut ka = Vec::new();
                push_keepalive(&mut ka);
                let _ = s.write_all(&ka);
                last_ka = Instant::now();
            }
        }
        Ok(FeedResult {
            established,
            written,
        })
    })
}

/// The sink: counts announced NLRI (walking lengths, no decoding) until `n`; returns when
/// it was Established and when the last route arrived.
fn run_sink(
    ns_path: String,
    n: usize,
    up: std::sync::mpsc::Sender<()>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<SystemTime>> {
    std::thread::spawn(move || {
        enter(&ns_path)?;
        let mut s = connect(SocketAddr::new(IpAddr::V4(DUT), 179))?;
        let mut buf = handshake(&mut s, 65003, SINK)?;
        let _ = up.send(());
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut count = 0usize;
        let mut chunk = vec![0u8; 1 << 18];
        loop {
            if stop.load(Ordering::Relaxed) {
                bail!("sink stopped at {count} of {n} routes");
            }
            let got = match s.read(&mut chunk) {
                Ok(0) => bail!("DUT closed the sink session at {count} routes"),
                Ok(k) => k,
                Err(_) => continue,
            };
            buf.extend_from_slice(&chunk[..got]);
            let mut pos = 0;
            while let Ok(Some((ty, len))) = check_header(&buf[pos..]) {
                let m = &buf[pos..pos + len];
                if ty == bgp::wire::MessageType::Update && len >= 23 {
                    let wl = u16::from_be_bytes([m[19], m[20]]) as usize;
                    let al = u16::from_be_bytes([m[21 + wl], m[22 + wl]]) as usize;
                    let mut i = 23 + wl + al;
                    while i < len {
                        i += 1 + (m[i] as usize).div_ceil(8);
                        count += 1;
                    }
                }
                pos += len;
            }
            buf.drain(..pos);
            if count >= n {
                return Ok(SystemTime::now());
            }
        }
    })
}

// ===== the device under test =====

fn proc_stat(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = s.rsplit_once(')').map(|x| x.1).context("stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn proc_kb(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse().ok())
        .with_context(|| format!("{field} of {pid}"))
}

fn unix_ns(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// `--dut`: our speaker as the device under test. Prints `ready`, then `done <unix ns>` when
/// it has seen a best path for every route.
async fn dut_main(n: usize, sink: bool, per_event: bool) -> Result<()> {
    let cfg = SpeakerConfig {
        local_as: 64512,
        router_id: DUT,
        listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 179)),
        graceful_restart_time: 0,
        ..SpeakerConfig::default()
    };
    let (speaker, mut events) = if per_event {
        let (s, mut rx) = Speaker::start(cfg)?;
        // Per-event delivery, counted in place (one channel operation per route).
        let (tx, brx) = tokio::sync::mpsc::unbounded_channel::<Vec<RouteEvent>>();
        tokio::spawn(async move {
            let mut best = 0usize;
            while let Some(ev) = rx.recv().await {
                if let RouteEvent::Best { .. } = ev {
                    best += 1;
                    if best == n {
                        println!("done {}", unix_ns(SystemTime::now()));
                    }
                }
            }
            drop(tx);
        });
        (s, brx)
    } else {
        Speaker::start_batched(cfg)?
    };
    let mut feeder = PeerConfig::new("feeder", IpAddr::V4(FEEDER), 65002);
    feeder.passive = true;
    feeder.hold_time = 240;
    feeder.keepalive_time = 80;
    feeder.families = vec![Afi::Ipv4];
    feeder.import = Some(Policy::accept_all());
    speaker.add_peer(feeder).await?;
    if sink {
        let mut s = PeerConfig::new("sink", IpAddr::V4(SINK), 65003);
        s.passive = true;
        s.hold_time = 240;
        s.keepalive_time = 80;
        s.families = vec![Afi::Ipv4];
        s.export = Some(Policy::accept_all());
        speaker.add_peer(s).await?;
    }
    println!("ready");
    let mut best = 0usize;
    while let Some(batch) = events.recv().await {
        for ev in batch {
            if let RouteEvent::Best { .. } = ev {
                best += 1;
                if best == n {
                    println!("done {}", unix_ns(SystemTime::now()));
                }
            }
        }
    }
    // Per-event mode: the counting task reports; keep running until killed.
    std::future::pending::<()>().await;
    let _ = speaker;
    Ok(())
}

struct Run {
    secs: f64,
    cpu: f64,
    hwm_kb: u64,
    base_kb: u64,
    written: Duration,
}

struct Lab {
    _fabric: Netns,
    dut: Netns,
    feeder: Netns,
    sink: Netns,
    dir: tempfile::TempDir,
}

fn lab(tag: &str) -> Result<Lab> {
    let fabric = Netns::create(&format!("{tag}f"))?;
    fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
    fabric.ip(&["link", "set", "br0", "up"])?;
    let mut nodes = Vec::new();
    for (i, name) in ["dut", "feed", "sink"].iter().enumerate() {
        let ns = Netns::create(&format!("{tag}{name}"))?;
        let p = format!("p{i}");
        veth(&fabric, &p, &ns, "eth0")?;
        fabric.ip(&["link", "set", &p, "master", "br0"])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("10.0.0.{}/24", i + 1),
            "dev",
            "eth0",
        ])?;
        nodes.push(ns);
    }
    let sink = nodes.pop().context("sink")?;
    let feeder = nodes.pop().context("feeder")?;
    let dut = nodes.pop().context("dut")?;
    Ok(Lab {
        _fabric: fabric,
        dut,
        feeder,
        sink,
        dir: tempfile::tempdir()?,
    })
}

fn wait_file(path: &Path, word: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.starts_with(word)) {
            return Ok(l.to_string());
        }
        if Instant::now() > deadline {
            bail!("no {word:?} from the DUT:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn bird_config(sink: bool) -> String {
    let mut c = format!(
        "router id {DUT};\nprotocol device {{ scan time 60; }}\n\
         protocol bgp feeder {{\n  local {DUT} as 64512;\n  neighbor {FEEDER} as 65002;\n  \
         passive on;\n  hold time 240;\n  ipv4 {{ import all; export none; }};\n}}\n"
    );
    if sink {
        c.push_str(&format!(
            "protocol bgp sink {{\n  local {DUT} as 64512;\n  neighbor {SINK} as 65003;\n  \
             passive on;\n  hold time 240;\n  ipv4 {{ import none; export all; }};\n}}\n"
        ));
    }
    c
}

fn birdc(ns: &Netns, ctl: &Path, args: &[&str]) -> Result<String> {
    let ctl = ctl.to_string_lossy().into_owned();
    let mut a = vec!["-s", ctl.as_str()];
    a.extend_from_slice(args);
    let out = ns.exec("birdc", &a)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// BIRD's control socket, kept open: a poll costs BIRD one protocol lookup, and nothing is
/// spawned (a Unix socket is reached through the file system, whatever the namespace).
struct BirdCtl {
    s: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
}

impl BirdCtl {
    fn connect(ctl: &Path) -> Result<BirdCtl> {
        let mut c = BirdCtl {
            s: std::os::unix::net::UnixStream::connect(ctl)?,
            buf: Vec::new(),
        };
        c.reply()?;
        Ok(c)
    }

    /// Reads one reply: lines until one whose code is followed by a space.
    fn reply(&mut self) -> Result<String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(2).enumerate().find_map(|(i, _)| {
                let line_start = if i == 0 {
                    true
                } else {
                    self.buf[i - 1] == b'\n'
                };
                (line_start
                    && self.buf.len() >= i + 5
                    && self.buf[i..i + 4].iter().all(u8::is_ascii_digit)
                    && self.buf[i + 4] == b' ')
                    .then(|| {
                        self.buf[i..]
                            .iter()
                            .position(|&b| b == b'\n')
                            .map(|p| i + p + 1)
                    })
                    .flatten()
            }) {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end);
                return Ok(text);
            }
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                bail!("BIRD closed the control socket");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn imported(&mut self) -> Result<usize> {
        self.s.write_all(b"show protocols all feeder\n")?;
        let text = self.reply()?;
        Ok(text
            .lines()
            .find_map(|l| {
                let i = l.find("Routes:")?;
                l[i + 7..].split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0))
    }
}

/// One run: start the DUT (ours or BIRD), optionally the sink, feed, measure.
fn run_once(
    args: &Args,
    n: usize,
    bird: bool,
    reflect: bool,
    feed: &Arc<Vec<u8>>,
    k: usize,
) -> Result<Run> {
    let tag = format!("q{k}");
    let l = lab(&tag)?;
    let log = l.dir.path().join("dut.log");
    let ctl: PathBuf = l.dir.path().join("bird.ctl");
    let daemon: Daemon = if bird {
        let conf = l.dir.path().join("bird.conf");
        std::fs::write(&conf, bird_config(reflect))?;
        let d = l.dut.spawn(
            "bird",
            &[
                "-f",
                "-c",
                &conf.to_string_lossy(),
                "-s",
                &ctl.to_string_lossy(),
            ],
            &BTreeMap::new(),
            &log,
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while birdc(&l.dut, &ctl, &["show", "status"]).map_or(true, |o| !o.contains("Daemon is up"))
        {
            if Instant::now() > deadline {
                bail!("BIRD did not start: {}", d.log_tail(10));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    } else {
        let me = std::env::current_exe()?;
        let ns_arg = n.to_string();
        let mut a = vec!["--dut", "--routes", ns_arg.as_str()];
        if reflect {
            a.push("--sink");
        }
        if args.per_event {
            a.push("--per-event");
        }
        let me = me.to_string_lossy().into_owned();
        // BENCH_PERF=<file>: profile the DUT with `perf record` (figures are then off).
        let d = match std::env::var("BENCH_PERF") {
            Ok(out) => {
                let mut pa = vec![
                    "record",
                    "-F",
                    "4000",
                    "-g",
                    "-o",
                    out.as_str(),
                    "--",
                    me.as_str(),
                ];
                pa.extend_from_slice(&a);
                l.dut.spawn("perf", &pa, &BTreeMap::new(), &log)?
            }
            Err(_) => l.dut.spawn(&me, &a, &BTreeMap::new(), &log)?,
        };
        wait_file(&log, "ready", Duration::from_secs(10))?;
        d
    };
    let pid = daemon.pid().context("DUT pid")?;
    let stop = Arc::new(AtomicBool::new(false));
    let sink = if reflect {
        let (tx, rx) = std::sync::mpsc::channel();
        let h = run_sink(l.sink.path(), n, tx, stop.clone());
        rx.recv_timeout(Duration::from_secs(20))
            .context("sink session")?;
        Some(h)
    } else {
        None
    };
    let mut bird_ctl = if bird {
        Some(BirdCtl::connect(&ctl)?)
    } else {
        None
    };
    std::thread::sleep(Duration::from_millis(200));
    let base_kb = proc_kb(pid, "VmRSS:")?;
    let cpu0 = proc_stat(pid)?;
    let feeder = run_feeder(l.feeder.path(), feed.clone(), stop.clone());
    let done: SystemTime = if let Some(h) = sink {
        match h.join() {
            Ok(r) => r?,
            Err(_) => bail!("sink thread panicked"),
        }
    } else if bird {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if bird_ctl
                .as_mut()
                .context("BIRD control socket")?
                .imported()?
                >= n
            {
                break SystemTime::now();
            }
            if Instant::now() > deadline {
                bail!("BIRD did not import {n} routes");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    } else {
        let line = wait_file(&log, "done", Duration::from_secs(120))?;
        let ns: u128 = line
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .context("done line")?;
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
    };
    if reflect && !bird && std::env::var("BENCH_DEBUG").is_ok() {
        if let Ok(line) = wait_file(&log, "done", Duration::from_secs(1)) {
            let ns: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            eprintln!(
                "DUT saw all best paths at {:?} after the feed started",
                (SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .zip(done.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|(a, b)| b.as_secs_f64() - a.as_secs_f64())
            );
        }
    }
    let cpu = proc_stat(pid)? - cpu0;
    let hwm_kb = proc_kb(pid, "VmHWM:")?;
    stop.store(true, Ordering::Relaxed);
    let fr = match feeder.join() {
        Ok(r) => r?,
        Err(_) => bail!("feeder thread panicked"),
    };
    let secs = done
        .duration_since(fr.established)
        .map_or(0.0, |d| d.as_secs_f64());
    drop(daemon);
    let _ = args;
    Ok(Run {
        secs,
        cpu,
        hwm_kb,
        base_kb,
        written: fr.written,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Cell {
    secs: Vec<f64>,
    cpu: Vec<f64>,
    hwm_kb: Vec<f64>,
    bpr: Vec<f64>,
    written: Vec<f64>,
}

fn cell(
    args: &Args,
    n: usize,
    bird: bool,
    reflect: bool,
    feed: &Arc<Vec<u8>>,
    k: &mut usize,
) -> Result<Cell> {
    let mut c = Cell {
        secs: vec![],
        cpu: vec![],
        hwm_kb: vec![],
        bpr: vec![],
        written: vec![],
    };
    for _ in 0..args.reps.max(1) {
        *k += 1;
        let r = run_once(args, n, bird, reflect, feed, *k)?;
        c.secs.push(r.secs);
        c.cpu.push(r.cpu);
        c.hwm_kb.push(r.hwm_kb as f64);
        c.bpr
            .push((r.hwm_kb.saturating_sub(r.base_kb) * 1024) as f64 / n as f64);
        c.written.push(r.written.as_secs_f64());
    }
    Ok(c)
}

fn show(name: &str, n: usize, c: &Cell) -> String {
    let s = median(c.secs.clone());
    let mn = c.secs.iter().copied().fold(f64::MAX, f64::min);
    let mx = c.secs.iter().copied().fold(0.0, f64::max);
    format!(
        "| {name:<12} | {n:>9} | {mn:.3} / {s:.3} / {mx:.3} s | {:>6.2} M/s | {:>5.2} s | {:>6.1} MB | {:>5.1} B | {:.3} s |",
        n as f64 / s / 1e6,
        median(c.cpu.clone()),
        median(c.hwm_kb.clone()) / 1024.0,
        median(c.bpr.clone()),
        median(c.written.clone()),
    )
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|x| x.1.trim().to_string()))
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let bird = std::process::Command::new("bird")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}, {bird}", kernel.trim())
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.dut {
        let n = args.routes.first().copied().unwrap_or(1_000_000);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return rt.block_on(dut_main(n, args.sink, args.per_event));
    }
    if !lab::netns::is_root() {
        bail!("the benchmark needs root (network namespaces)");
    }
    lab::remove_leftovers();
    if args.routes.is_empty() {
        args.routes = vec![1_000_000, 100_000];
    }
    println!("machine: {}", machine());
    println!(
        "feed: {} attribute sets, packed UPDATEs written in one go after Established; \
         {} repetitions, min / median / max; our events {}\n",
        SETS,
        args.reps,
        if args.per_event {
            "one per route"
        } else {
            "in batches"
        }
    );
    println!(
        "| DUT          |    routes | Established -> all in Loc-RIB | rate       | CPU     | peak RSS  | B/route | feeder write |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut k = 0;
    let mut ratios = Vec::new();
    for &n in &args.routes {
        let feed = Arc::new(build_feed(n)?);
        let cases: &[bool] = if args.no_reflect {
            &[false]
        } else {
            &[false, true]
        };
        for &reflect in cases {
            let ours = cell(&args, n, false, reflect, &feed, &mut k)?;
            let label = if reflect { "ours reflect" } else { "ours" };
            println!("{}", show(label, n, &ours));
            if !args.no_bird {
                let bird = cell(&args, n, true, reflect, &feed, &mut k)?;
                let label = if reflect { "BIRD reflect" } else { "BIRD 2" };
                println!("{}", show(label, n, &bird));
                ratios.push((
                    n,
                    reflect,
                    median(bird.secs.clone()) / median(ours.secs.clone()),
                    median(ours.bpr.clone()) / median(bird.bpr.clone()),
                    median(ours.cpu.clone()) / median(bird.cpu.clone()).max(0.01),
                ));
            }
        }
    }
    if !ratios.is_empty() {
        println!("\nratios (ours vs BIRD; rate > 1 and bytes < 1 mean ours is better):");
        for (n, reflect, rate, bytes, cpu) in ratios {
            println!(
                "  {n:>9} routes{}: rate x{rate:.2}, bytes/route x{bytes:.2}, CPU x{cpu:.2}",
                if reflect { " (reflect)" } else { "" }
            );
        }
    }
    Ok(())
}
