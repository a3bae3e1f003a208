//! The whole receive path as one synchronous pipeline — framing, decoding with RFC 7606,
//! the session FSM and the RIB — for the cargo-fuzz target (`bgp/fuzz/`) and the
//! mutation test (`bgp/tests/mutation.rs`), which feed it arbitrary bytes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::fsm::{Input, Output, Session, SessionConfig, State};
use crate::prefix::Afi;
use crate::rib::{PeerUp, Rib, RibConfig};
use crate::wire::encode::push_keepalive;
use crate::wire::{Message, OpenParams, UpdateCtx, decode_stream, encode_open};
use crate::{PeerConfig, Policy};

const LOCAL_AS: u32 = 64512;
const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// Our side of one session with 10.0.0.2 (eBGP AS 65001 or iBGP), plus a second,
/// established peer (10.0.0.3) so accepted routes are also exported.
pub struct ReceivePath {
    session: Session,
    rib: Rib,
    peer: u16,
    ctx: UpdateCtx,
    now: Instant,
}

impl ReceivePath {
    /// A session in OpenSent, waiting for the peer's OPEN. `reflector` makes us a route
    /// reflector (a cluster id is set).
    pub fn new(ebgp: bool, reflector: bool) -> ReceivePath {
        let remote_as = if ebgp { 65001 } else { LOCAL_AS };
        let families = vec![Afi::Ipv4, Afi::Ipv6];
        let mut session = Session::new(SessionConfig {
            local_as: LOCAL_AS,
            remote_as,
            router_id: LOCAL_ID,
            hold_time: 90,
            keepalive_time: 30,
            connect_retry: Duration::from_secs(1),
            passive: false,
            families: families.clone(),
            graceful_restart: Some((120, false)),
            idle_hold_min: Duration::from_secs(1),
            idle_hold_max: Duration::from_secs(8),
        });
        let mut rib = Rib::new(RibConfig {
            local_as: LOCAL_AS,
            router_id: LOCAL_ID,
            cluster_id: reflector.then_some(Ipv4Addr::new(1, 1, 1, 1)),
            ebgp_requires_policy: true,
        });
        let mut pc = PeerConfig::new("p", IpAddr::V4(PEER_ID), remote_as);
        pc.import = Some(Policy::accept_all());
        pc.export = Some(Policy::accept_all());
        let peer = rib.add_peer(&pc);
        let other = rib.add_peer(&PeerConfig::new(
            "q",
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
            LOCAL_AS,
        ));
        rib.peer_up(
            other,
            PeerUp {
                router_id: Ipv4Addr::new(10, 0, 0, 3),
                families,
                local_addr: Some(IpAddr::V4(LOCAL_ID)),
                graceful_restart: None,
            },
        );
        let now = Instant::now();
        session.handle(Input::Start, now);
        session.handle(Input::TcpConnected { inbound: false }, now);
        ReceivePath {
            session,
            rib,
            peer,
            ctx: UpdateCtx {
                ebgp,
                peer_as: remote_as,
            },
            now,
        }
    }

    /// What the peer sends to bring the session to Established: its OPEN and a KEEPALIVE.
    pub fn peer_open(&self) -> Vec<u8> {
        let mut bytes = encode_open(&OpenParams {
            asn: self.ctx.peer_as,
            hold_time: 90,
            router_id: PEER_ID,
            families: vec![Afi::Ipv4, Afi::Ipv6],
            graceful_restart: Some((120, false)),
        })
        .unwrap_or_default();
        push_keepalive(&mut bytes);
        bytes
    }

    /// The session's state.
    pub fn state(&self) -> State {
        self.session.state()
    }

    /// True for the eBGP variant.
    pub fn is_ebgp(&self) -> bool {
        self.ctx.ebgp
    }

    /// Feeds bytes received from the peer through decode, FSM and RIB (best path, export,
    /// wire encoding). Returns how many attribute-decoder panics were contained: any is a
    /// gap in the RFC 7606 pre-pass.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut panics = 0;
        let mut inputs = Vec::new();
        decode_stream(bytes, &self.ctx, |m| {
            inputs.push(match m {
                Ok(message) => {
                    if let Message::Update(u) = &message {
                        panics += u
                            .errors
                            .iter()
                            .filter(|e| e.reason.contains("panicked"))
                            .count();
                    }
                    Input::Message { message }
                }
                Err(notification) => Input::DecodeError { notification },
            });
            true
        });
        for i in inputs {
            for o in self.session.handle(i, self.now) {
                match o {
                    Output::Update(u) => self.rib.apply_update(self.peer, *u),
                    Output::Established(n) => self.rib.peer_up(
                        self.peer,
                        PeerUp {
                            router_id: n.peer_router_id,
                            families: n.families,
                            local_addr: Some(IpAddr::V4(LOCAL_ID)),
                            graceful_restart: n.peer_graceful_restart,
                        },
                    ),
                    Output::Down(d) => self
                        .rib
                        .peer_down(self.peer, if d.graceful { &[Afi::Ipv4] } else { &[] }),
                    Output::RouteRefresh(afi) => self.rib.route_refresh(self.peer, afi),
                    _ => {}
                }
            }
        }
        self.rib.process();
        self.rib.take_events();
        for p in self.rib.peers_with_wire() {
            self.rib.take_wire(p);
        }
        panics
    }
}
