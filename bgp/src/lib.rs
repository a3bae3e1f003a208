//! An embeddable BGP-4 speaker (RFC 4271) for calico-node, in place of BIRD: sessions, a
//! sans-IO FSM, Adj-RIBs-In / Loc-RIB / Adj-RIBs-Out with the RFC 4271 decision process,
//! route reflection (RFC 4456), per-peer policy with RFC 8212 default deny, graceful restart
//! (RFC 4724), TCP MD5 (RFC 2385) and GTSM (RFC 5082). Depends on no other calico-rs crate.
//!
//! # Embedding
//!
//! ```no_run
//! use bgp::{OriginAttrs, PeerConfig, Policy, RouteEvent, Speaker, SpeakerConfig};
//!
//! # async fn demo() -> Result<(), bgp::Error> {
//! let (speaker, mut events) = Speaker::start(SpeakerConfig {
//!     local_as: 64512,
//!     router_id: "10.0.0.1".parse().unwrap(),
//!     listen: Some("0.0.0.0:179".parse().unwrap()),
//!     cluster_id: None,            // Some(id): we are a route reflector
//!     graceful_restart_time: 120,  // advertised Restart Time; 0 = no GR capability
//!     restarting: false,           // true right after our own restart (R and F bits)
//!     ..SpeakerConfig::default()
//! })?;
//! let mut tor = PeerConfig::new("Global_tor", "10.0.0.254".parse().unwrap(), 65001);
//! tor.password = Some("secret".into());          // TCP MD5
//! tor.import = Some(Policy::accept_all());       // eBGP needs policies (RFC 8212)
//! tor.export = Some(Policy::accept_all());
//! speaker.add_peer(tor).await?;
//! speaker.originate(vec![("192.168.3.0/26".parse().unwrap(), OriginAttrs::default())])?;
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         RouteEvent::Best { prefix, next_hop, .. } => { /* ip route replace */ }
//!         RouteEvent::Withdrawn { prefix } => { /* ip route del */ }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! [`Speaker`] (cheap `Clone` handle on one task that owns all state):
//! - [`Speaker::start`]`(SpeakerConfig) -> Result<(Speaker, UnboundedReceiver<RouteEvent>)>`,
//!   or [`Speaker::start_batched`] for `Vec<RouteEvent>` batches (one channel operation per
//!   RIB batch: markedly cheaper for big tables, see `BENCHMARK.md`).
//! - `add_peer(PeerConfig)`, `update_peer(PeerConfig)` (live: policies, next-hop mode and the
//!   reflector-client flag apply to the running session — an import change asks the peer
//!   for its routes with ROUTE-REFRESH; anything else restarts only that session),
//!   `remove_peer(SocketAddr)` (Cease / Peer De-configured) — all `async`, `Result<(), Error>`.
//! - `originate(Vec<(IpNet, OriginAttrs)>)`, `withdraw(Vec<IpNet>)` — local routes.
//! - `peer_status() -> Vec<PeerStatus>`: state, since, last error in BIRD's words, received
//!   / accepted / advertised / stale counts; [`PeerStatus::bird_state`] and
//!   [`PeerStatus::bird_info`] give `calicoctl node status` columns ("up", "Established",
//!   "Active        Socket: Connection refused", "Idle          BGP Error: Bad BGP
//!   identifier").
//! - `learned_routes() -> Vec<LearnedRoute>` (snapshot for a resync) and
//!   `explain(IpNet) -> Vec<PathInfo>` (every path with the reason it lost).
//! - `shutdown(Option<String>)`: Cease / Administrative Shutdown with the RFC 8203 message
//!   to every peer, waits for it to be written, stops. Dropping every handle does the same.
//!
//! [`RouteEvent`]: `Best { prefix, next_hop, as_path, from_peer, attrs }` and
//! `Withdrawn { prefix }` whenever the Loc-RIB best of a *learned* prefix changes (our own
//! originated routes are not reported; routes of a restarting graceful-restart peer stay
//! until its End-of-RIB or restart timer), `PeerState` on every session state change,
//! `PeerUp` / `PeerDown`.
//!
//! [`PeerConfig`]: name, address and port (179), remote AS, local AS override, source
//! address, passive, password, `ttl_security` hops, route-reflector client, next-hop mode
//! ([`NextHopMode`]: auto / self / keep), IPv6 next hop for next-hop-self, allowed own-AS
//! count, hold / keepalive / connect-retry, error back-off, graceful-restart time, families,
//! import / export [`Policy`].
//!
//! # Layout
//!
//! - [`wire`]: framing, OPEN, UPDATE (RFC 7606 pre-pass), NOTIFICATION, encoders. zettabgp
//!   0.6 decodes attribute values and encodes OPEN and attributes; its bugs are handled
//!   (reference §1.4/§1.6): own framing and length checks, AS_PATH hand-encoded as
//!   AS_SEQUENCE, ATOMIC_AGGREGATE / AGGREGATOR / LARGE_COMMUNITY hand-encoded (zettabgp
//!   writes 4 octets for ATOMIC_AGGREGATE, nothing for AGGREGATOR and sets Partial on large
//!   communities), `fuzzy_pathid` off, IPv4 peer mode always, no FQDN capability sent, our
//!   own OPEN decoder (FRR's FQDN domain breaks zettabgp's), NOTIFICATION data hand-built,
//!   every value pre-validated before zettabgp sees it and `catch_unwind` around it.
//! - [`fsm`]: the RFC 4271 §8 session FSM, sans-IO (`Session::handle(Input, now) ->
//!   Vec<Output>`).
//! - [`collision`]: which of a peer's two connections survives (RFC 4271 §6.8, RFC 4724
//!   §4.2), pure.
//! - [`rib`]: paths, Loc-RIB, decision process ([`rib::decision`]), export and Adj-RIB-Out.
//! - [`policy`]: import / export statements.
//! - [`speaker`]: the tokio task, connection I/O, sockets (the only `unsafe`: MD5 / GTSM
//!   `setsockopt`), timers.
//! - [`config`], [`events`], [`prefix`], [`error`].
//!
//! # Tests
//!
//! - `cargo test -p bgp` (no root): FSM transitions (`fsm_tests.rs`), RFC 7606 crafted
//!   UPDATEs (`tests/rfc7606.rs`), decision tie-breakers, reflection and RIB behaviour
//!   (`rib/`), replay conformance with golden JSONL (`tests/conformance/`,
//!   `CALICO_RS_UPDATE_GOLDEN=1` regenerates), a deterministic mutation test of the whole
//!   receive path (`tests/mutation.rs`), two speakers over loopback (`tests/loopback.rs`).
//! - `cargo test -p bgp -- --ignored` (root, `bird2` `frr` `gobgpd` installed): interop in
//!   network namespaces (`tests/interop/`).
//! - `RUSTC_BOOTSTRAP=1 cargo fuzz run receive -- -max_total_time=60` from `bgp/` (needs
//!   `cargo install cargo-fuzz`): the libFuzzer target in `bgp/fuzz/`.
//! - `cargo run --release -p bgp --example bench_ingest` (root): the benchmark against BIRD 2,
//!   see `BENCHMARK.md`.
//!
//! Not supported: ADD-PATH, RFC 8654 extended messages, RFC 8950 extended next hop,
//! confederations (AS_CONFED segments are treated as withdraw), 2-octet-AS peers (refused
//! with NOTIFICATION 2/7), selection deferral when we restart, BFD.

pub mod collision;
pub mod config;
pub mod error;
pub mod events;
pub mod fsm;
pub mod graceful;
pub mod policy;
pub mod prefix;
#[cfg(feature = "test-harness")]
pub mod receive;
pub mod rib;
pub mod speaker;
pub mod wire;

pub use config::{NextHopMode, OriginAttrs, PeerConfig, SpeakerConfig};
pub use error::Error;
pub use events::{LearnedRoute, PathInfo, PeerStatus, RouteEvent};
pub use fsm::State;
pub use policy::Policy;
pub use prefix::{Afi, Prefix, Prefix4, Prefix6, PrefixKey};
pub use speaker::Speaker;
