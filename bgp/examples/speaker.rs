//! A standalone BGP speaker for trying the crate alone and for interop tests.
//!
//! ```text
//! cargo run -p bgp --example speaker -- --as 64512 --router-id 10.0.0.1 \
//!     [--listen 0.0.0.0:179] --peer 10.0.0.2,65001[,password=PW][,passive] ... \
//!     --announce 10.10.0.0/24 ...
//! ```
//!
//! Prints one JSON object per line on stdout: `{"event":"peer","peer":..,"state":..}` on every
//! session state change, `{"event":"best","prefix":..,"next_hop":..,"as_path":[..]}` and
//! `{"event":"withdraw","prefix":..}` on every best-path change of a learned route. Logs go
//! to stderr (`RUST_LOG=bgp=debug`). Runs until killed; SIGTERM / Ctrl-C send Cease /
//! Administrative Shutdown to every peer first.
//!
//! Peer options after the address and AS, comma separated: `password=PW`, `passive`,
//! `port=N`, `local=IP` (source address), `ttl-security=HOPS`, `rr-client`,
//! `next-hop=self|keep|auto`, `next-hop-v6=IP`, `allow-local-as=N`, `hold=S`,
//! `keepalive=S`, `connect-retry=S`, `error-wait=MIN:MAX`, `name=NAME`. Peers accept and
//! send everything unless `--rfc8212` is given (then eBGP peers get nothing either way).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use bgp::{NextHopMode, OriginAttrs, PeerConfig, Policy, RouteEvent, Speaker, SpeakerConfig};
use clap::Parser;
use ipnet::IpNet;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "A standalone BGP speaker printing JSON lines")]
struct Args {
    /// Our AS number.
    #[arg(long = "as")]
    asn: u32,
    /// Our BGP identifier.
    #[arg(long)]
    router_id: Ipv4Addr,
    /// Listen address (omit to only connect out).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// A peer: ADDRESS,AS[,option...] (repeatable).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// A prefix to originate (repeatable).
    #[arg(long = "announce")]
    announce: Vec<IpNet>,
    /// Be a route reflector with this CLUSTER_ID.
    #[arg(long)]
    cluster_id: Option<Ipv4Addr>,
    /// Graceful-restart Restart Time to advertise (0 = off).
    #[arg(long, default_value_t = 120)]
    graceful_restart: u16,
    /// Set the graceful-restart R bit (we restarted with forwarding state kept).
    #[arg(long)]
    restarting: bool,
    /// Apply RFC 8212 default deny to eBGP peers (no accept-all policies).
    #[arg(long)]
    rfc8212: bool,
    /// Default hold time for peers (seconds).
    #[arg(long, default_value_t = 90)]
    hold: u16,
    /// Default keepalive time for peers (seconds).
    #[arg(long, default_value_t = 30)]
    keepalive: u16,
    /// Default connect retry time for peers (seconds).
    #[arg(long, default_value_t = 5)]
    connect_retry: u16,
}

fn parse_peer(spec: &str, a: &Args) -> Result<PeerConfig> {
    let mut parts = spec.split(',');
    let addr: IpAddr = parts
        .next()
        .context("peer address")?
        .parse()
        .with_context(|| format!("peer {spec:?}: address"))?;
    let asn: u32 = parts
        .next()
        .with_context(|| format!("peer {spec:?}: AS missing"))?
        .parse()
        .with_context(|| format!("peer {spec:?}: AS"))?;
    let mut p = PeerConfig::new(format!("peer_{addr}"), addr, asn);
    p.hold_time = a.hold;
    p.keepalive_time = a.keepalive;
    p.connect_retry_time = a.connect_retry;
    if !a.rfc8212 {
        p.import = Some(Policy::accept_all());
        p.export = Some(Policy::accept_all());
    }
    for opt in parts {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        let num = |v: &str| -> Result<u16> {
            v.parse()
                .with_context(|| format!("peer {spec:?}: {k}={v:?} is not a number"))
        };
        match k {
            "password" => p.password = Some(v.to_owned()),
            "passive" => p.passive = true,
            "port" => p.port = num(v)?,
            "local" => p.local_address = Some(v.parse().context("local=")?),
            "ttl-security" => p.ttl_security = Some(num(v)? as u8),
            "rr-client" => p.route_reflector_client = true,
            "next-hop" => {
                p.next_hop = match v {
                    "self" => NextHopMode::SelfAddress,
                    "keep" => NextHopMode::Keep,
                    "auto" => NextHopMode::Auto,
                    _ => bail!("peer {spec:?}: next-hop is self, keep or auto"),
                }
            }
            "next-hop-v6" => p.next_hop_v6 = Some(v.parse().context("next-hop-v6=")?),
            "allow-local-as" => p.num_allowed_local_as = num(v)? as u8,
            "hold" => p.hold_time = num(v)?,
            "keepalive" => p.keepalive_time = num(v)?,
            "connect-retry" => p.connect_retry_time = num(v)?,
            "error-wait" => {
                let (lo, hi) = v.split_once(':').context("error-wait=MIN:MAX")?;
                p.error_wait_time = (num(lo)?, num(hi)?);
            }
            "name" => p.name = v.to_owned(),
            _ => bail!("peer {spec:?}: unknown option {k:?}"),
        }
    }
    Ok(p)
}

fn line(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "bgp=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let peers = a
        .peers
        .iter()
        .map(|s| parse_peer(s, &a))
        .collect::<Result<Vec<_>>>()?;
    let (speaker, mut events) = Speaker::start(SpeakerConfig {
        local_as: a.asn,
        router_id: a.router_id,
        listen: a.listen,
        cluster_id: a.cluster_id,
        graceful_restart_time: a.graceful_restart,
        restarting: a.restarting,
        ebgp_requires_policy: true,
        ..SpeakerConfig::default()
    })?;
    for p in peers {
        speaker.add_peer(p).await?;
    }
    if !a.announce.is_empty() {
        speaker.originate(
            a.announce
                .iter()
                .map(|n| (*n, OriginAttrs::default()))
                .collect(),
        )?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    RouteEvent::PeerState { peer, name, state, last_error } => line(json!({
                        "event": "peer", "peer": peer, "name": name,
                        "state": state.name(), "error": last_error,
                    })),
                    RouteEvent::Best { prefix, next_hop, as_path, from_peer, attrs } => line(json!({
                        "event": "best", "prefix": prefix, "next_hop": next_hop,
                        "as_path": &*as_path, "from": from_peer,
                        "communities": attrs.communities.iter()
                            .map(|c| format!("{}:{}", c >> 16, c & 0xffff)).collect::<Vec<_>>(),
                    })),
                    RouteEvent::Withdrawn { prefix } => line(json!({
                        "event": "withdraw", "prefix": prefix,
                    })),
                    RouteEvent::PeerUp { .. } | RouteEvent::PeerDown { .. } => {}
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    speaker
        .shutdown(Some("speaker example stopped".into()))
        .await?;
    Ok(())
}
