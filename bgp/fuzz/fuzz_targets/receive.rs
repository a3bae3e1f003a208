//! Fuzzes the whole receive path: framing, message decoding (with RFC 7606), the session FSM
//! and the RIB. The first input byte picks the session (OpenSent or Established, eBGP or
//! iBGP); the rest is the byte stream from the peer. No input may panic; zettabgp must never
//! be reached with an attribute that makes it panic (the RFC 7606 pre-pass must catch it).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bgp::fsm::{Input, Output, Session, SessionConfig, State};
use bgp::prefix::Afi;
use bgp::rib::{PeerUp, Rib, RibConfig};
use bgp::wire::encode::push_keepalive;
use bgp::wire::{Message, OpenParams, UpdateCtx, decode_stream, encode_open};
use bgp::{PeerConfig, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let ebgp = sel & 1 == 0;
    let established = sel & 2 == 0;
    let remote_as = if ebgp { 65001 } else { 64512 };
    let now = Instant::now();
    let mut s = Session::new(SessionConfig {
        local_as: 64512,
        remote_as,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        hold_time: 90,
        keepalive_time: 30,
        connect_retry: Duration::from_secs(1),
        passive: false,
        families: vec![Afi::Ipv4, Afi::Ipv6],
        graceful_restart: Some((120, false)),
        idle_hold_min: Duration::from_secs(1),
        idle_hold_max: Duration::from_secs(8),
    });
    let mut rib = Rib::new(RibConfig {
        local_as: 64512,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        cluster_id: (sel & 4 != 0).then_some(Ipv4Addr::new(1, 1, 1, 1)),
        ebgp_requires_policy: true,
    });
    let mut pc = PeerConfig::new("p", IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), remote_as);
    pc.import = Some(Policy::accept_all());
    pc.export = Some(Policy::accept_all());
    let idx = rib.add_peer(&pc);
    let other = rib.add_peer(&PeerConfig::new(
        "q",
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
        64512,
    ));
    rib.peer_up(
        other,
        PeerUp {
            router_id: Ipv4Addr::new(10, 0, 0, 3),
            families: vec![Afi::Ipv4, Afi::Ipv6],
            local_addr: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            graceful_restart: None,
        },
    );
    s.handle(Input::Start, now);
    s.handle(Input::TcpConnected { inbound: false }, now);
    let ctx = UpdateCtx {
        ebgp,
        peer_as: remote_as,
    };
    let mut bytes = Vec::new();
    if established {
        if let Ok(open) = encode_open(&OpenParams {
            asn: remote_as,
            hold_time: 90,
            router_id: Ipv4Addr::new(10, 0, 0, 2),
            families: vec![Afi::Ipv4, Afi::Ipv6],
            graceful_restart: Some((120, false)),
        }) {
            bytes.extend_from_slice(&open);
        }
        push_keepalive(&mut bytes);
    }
    bytes.extend_from_slice(stream);
    let mut inputs = Vec::new();
    decode_stream(&bytes, &ctx, |m| {
        if let Ok(Message::Update(u)) = &m {
            assert!(
                !u.errors.iter().any(|e| e.reason.contains("panicked")),
                "zettabgp panicked on an attribute the pre-pass accepted"
            );
        }
        inputs.push(match m {
            Ok(message) => Input::Message { message },
            Err(notification) => Input::DecodeError { notification },
        });
        true
    });
    for i in inputs {
        for o in s.handle(i, now) {
            match o {
                Output::Update(u) => rib.apply_update(idx, *u),
                Output::Established(n) => rib.peer_up(
                    idx,
                    PeerUp {
                        router_id: n.peer_router_id,
                        families: n.families,
                        local_addr: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
                        graceful_restart: n.peer_graceful_restart,
                    },
                ),
                Output::Down(d) => rib.peer_down(idx, if d.graceful { &[Afi::Ipv4] } else { &[] }),
                Output::RouteRefresh(afi) => rib.route_refresh(idx, afi),
                _ => {}
            }
        }
    }
    rib.process();
    let _ = rib.take_events();
    let _ = s.state() == State::Established;
});
