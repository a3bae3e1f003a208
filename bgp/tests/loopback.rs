//! Two speakers in one process over 127.0.0.x loopback addresses (no root, no namespaces):
//! sessions, route exchange, withdrawal, shutdown text, errors, collisions.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bgp::{OriginAttrs, PeerConfig, Policy, RouteEvent, Speaker, SpeakerConfig, State};
use ipnet::IpNet;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

static PORT: AtomicU16 = AtomicU16::new(0);

fn port() -> u16 {
    let base = 20000 + (std::process::id() % 20000) as u16;
    base + PORT.fetch_add(1, Ordering::Relaxed) * 2
}

fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn speaker(asn: u32, last: u8, port: u16) -> (Speaker, UnboundedReceiver<RouteEvent>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Speaker::start(SpeakerConfig {
        local_as: asn,
        router_id: Ipv4Addr::new(10, 0, 0, last),
        listen: Some(SocketAddr::new(lo(last), port)),
        ..SpeakerConfig::default()
    })
    .expect("speaker starts")
}

fn peer(last: u8, asn: u32, port: u16, me: u8) -> PeerConfig {
    PeerConfig {
        port,
        local_address: Some(lo(me)),
        hold_time: 9,
        keepalive_time: 3,
        connect_retry_time: 1,
        error_wait_time: (1, 2),
        import: Some(Policy::accept_all()),
        export: Some(Policy::accept_all()),
        ..PeerConfig::new(format!("peer{last}"), lo(last), asn)
    }
}

async fn next_event(
    rx: &mut UnboundedReceiver<RouteEvent>,
    f: impl Fn(&RouteEvent) -> bool,
) -> RouteEvent {
    loop {
        let ev = timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("event in time")
            .expect("channel open");
        if f(&ev) {
            return ev;
        }
    }
}

async fn wait_state(s: &Speaker, addr: IpAddr, st: State) -> bgp::PeerStatus {
    for _ in 0..400 {
        let v = s.peer_status().await.expect("status");
        if let Some(p) = v.into_iter().find(|p| p.address == addr) {
            if p.state == st {
                return p;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("peer {addr} never reached {st:?}");
}

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_exchange_and_withdraw_routes_over_ebgp() {
    let port = port();
    let (a, mut a_ev) = speaker(64512, 1, port);
    let (b, mut b_ev) = speaker(65002, 2, port);
    a.add_peer(peer(2, 65002, port, 1)).await.expect("add");
    b.add_peer(peer(1, 64512, port, 2)).await.expect("add");
    a.originate(vec![(net("192.168.1.0/26"), OriginAttrs::default())])
        .expect("originate");
    b.originate(vec![(net("10.244.0.0/24"), OriginAttrs::default())])
        .expect("originate");
    let ev = next_event(&mut b_ev, |e| matches!(e, RouteEvent::Best { .. })).await;
    let RouteEvent::Best {
        prefix,
        next_hop,
        as_path,
        from_peer,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(prefix, net("192.168.1.0/26"));
    assert_eq!((next_hop, from_peer), (lo(1), lo(1)));
    assert_eq!(&*as_path, &[64512]);
    let ev = next_event(&mut a_ev, |e| matches!(e, RouteEvent::Best { .. })).await;
    assert!(matches!(ev, RouteEvent::Best { prefix, .. } if prefix == net("10.244.0.0/24")));
    a.withdraw(vec![net("192.168.1.0/26")]).expect("withdraw");
    let ev = next_event(&mut b_ev, |e| matches!(e, RouteEvent::Withdrawn { .. })).await;
    assert_eq!(
        ev,
        RouteEvent::Withdrawn {
            prefix: net("192.168.1.0/26")
        }
    );
    let st = wait_state(&a, lo(2), State::Established).await;
    assert_eq!((st.prefixes_received, st.prefixes_accepted), (1, 1));
    assert_eq!(st.prefixes_advertised, 0);
    assert_eq!(st.bird_info(), "Established");
    let routes = a.learned_routes().await.expect("snapshot");
    assert_eq!(routes.len(), 1);
    // Exactly one session survived whatever collision happened.
    let st = b.peer_status().await.expect("status");
    assert_eq!(st.len(), 1);
    a.shutdown(None).await.expect("shutdown");
    b.shutdown(None).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_the_administrative_shutdown_text_to_the_peer() {
    let port = port();
    let (a, _a_ev) = speaker(64512, 3, port);
    let (b, mut b_ev) = speaker(64512, 4, port);
    a.add_peer(peer(4, 64512, port, 3)).await.expect("add");
    let mut pb = peer(3, 64512, port, 4);
    pb.passive = true;
    b.add_peer(pb).await.expect("add");
    next_event(&mut b_ev, |e| matches!(e, RouteEvent::PeerUp { .. })).await;
    a.shutdown(Some("maintenance window".into()))
        .await
        .expect("shutdown");
    let ev = next_event(&mut b_ev, |e| matches!(e, RouteEvent::PeerDown { .. })).await;
    let RouteEvent::PeerDown {
        reason, graceful, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(
        reason,
        "Received: Administrative shutdown: \"maintenance window\""
    );
    assert!(!graceful);
    b.shutdown(None).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_peer_as_is_refused_and_shown_like_bird() {
    let port = port();
    let (a, _a_ev) = speaker(64512, 5, port);
    let (b, _b_ev) = speaker(65002, 6, port);
    let mut pa = peer(6, 65099, port, 5);
    pa.passive = true;
    a.add_peer(pa).await.expect("add");
    b.add_peer(peer(5, 64512, port, 6)).await.expect("add");
    let mut seen = None;
    for _ in 0..200 {
        let st = a.peer_status().await.expect("status");
        if let Some(e) = &st[0].last_error {
            seen = Some((st[0].clone(), e.clone()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, e) = seen.expect("an error shows up");
    assert_eq!(e, "BGP Error: Bad peer AS");
    assert_eq!(st.bird_state(), "start");
    assert!(st.bird_info().starts_with("Idle"), "{}", st.bird_info());
    a.shutdown(None).await.expect("shutdown");
    b.shutdown(None).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_shows_active_socket_error() {
    let port = port();
    let (a, _a_ev) = speaker(64512, 7, port);
    a.add_peer(peer(8, 65002, port, 7)).await.expect("add");
    let mut info = String::new();
    for _ in 0..200 {
        let st = a.peer_status().await.expect("status");
        info = st[0].bird_info();
        if st[0].last_error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        info.ends_with("Socket: Connection refused"),
        "info was {info:?}"
    );
    a.shutdown(None).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_peer_withdraws_what_it_sent() {
    let port = port();
    let (a, mut a_ev) = speaker(64512, 9, port);
    let (b, _b_ev) = speaker(64512, 10, port);
    a.add_peer(peer(10, 64512, port, 9)).await.expect("add");
    b.add_peer(peer(9, 64512, port, 10)).await.expect("add");
    b.originate(vec![(net("10.9.0.0/24"), OriginAttrs::default())])
        .expect("originate");
    next_event(&mut a_ev, |e| matches!(e, RouteEvent::Best { .. })).await;
    a.remove_peer(SocketAddr::new(lo(10), port))
        .await
        .expect("remove");
    next_event(&mut a_ev, |e| matches!(e, RouteEvent::Withdrawn { .. })).await;
    assert!(a.peer_status().await.expect("status").is_empty());
    assert!(a.remove_peer(SocketAddr::new(lo(10), port)).await.is_err());
    a.shutdown(None).await.expect("shutdown");
    b.shutdown(None).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_to_one_address_on_two_ports_are_two_peers() {
    // As Calico's Global_<ip>_port_<p> protocols: one router address, two BGP speakers
    // listening on different ports (both wait for us to dial).
    let (pa, pb, pc) = (port(), port(), port());
    let (a, mut a_ev) = speaker(64512, 11, pa);
    let (b, _b_ev) = speaker(65002, 12, pb);
    let (c, _c_ev) = Speaker::start(SpeakerConfig {
        local_as: 65003,
        router_id: Ipv4Addr::new(10, 0, 0, 13),
        listen: Some(SocketAddr::new(lo(12), pc)),
        ..SpeakerConfig::default()
    })
    .expect("speaker starts");
    for s in [&b, &c] {
        s.add_peer(PeerConfig {
            passive: true,
            ..peer(11, 64512, pa, 12)
        })
        .await
        .expect("add");
    }
    a.add_peer(peer(12, 65002, pb, 11)).await.expect("add");
    a.add_peer(PeerConfig {
        name: "peer12-second".into(),
        ..peer(12, 65003, pc, 11)
    })
    .await
    .expect("add");
    assert!(a.add_peer(peer(12, 65002, pb, 11)).await.is_err());
    b.originate(vec![(net("10.1.0.0/24"), OriginAttrs::default())])
        .expect("originate");
    c.originate(vec![(net("10.2.0.0/24"), OriginAttrs::default())])
        .expect("originate");
    let mut best = std::collections::BTreeMap::new();
    while best.len() < 2 {
        if let RouteEvent::Best {
            prefix, as_path, ..
        } = next_event(&mut a_ev, |e| matches!(e, RouteEvent::Best { .. })).await
        {
            best.insert(prefix.to_string(), as_path.to_vec());
        }
    }
    assert_eq!(best["10.1.0.0/24"], [65002]);
    assert_eq!(best["10.2.0.0/24"], [65003]);
    let ports: Vec<u16> = a
        .peer_status()
        .await
        .expect("status")
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    a.remove_peer(SocketAddr::new(lo(12), pc))
        .await
        .expect("remove");
    let gone = next_event(&mut a_ev, |e| matches!(e, RouteEvent::Withdrawn { .. })).await;
    assert!(matches!(gone, RouteEvent::Withdrawn { prefix, .. } if prefix == net("10.2.0.0/24")));
    let left = a.peer_status().await.expect("status");
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].port, left[0].state), (pb, State::Established));
    for s in [a, b, c] {
        s.shutdown(None).await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_listener_takes_the_other_familys_sessions() {
    // As BIRD6 next to BIRD: the node listens on its IPv4 and its IPv6 address, and an
    // IPv6 peer that dials the IPv6 one gets its session.
    let v6 = |port: u16| SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), port);
    let (pa, pb) = (port(), port());
    let (a, mut a_ev) = Speaker::start(SpeakerConfig {
        local_as: 64512,
        router_id: Ipv4Addr::new(10, 0, 0, 21),
        listen: Some(SocketAddr::new(lo(21), pa)),
        listen_other_family: Some(v6(pa)),
        ..SpeakerConfig::default()
    })
    .expect("speaker starts");
    let (b, _b_ev) = Speaker::start(SpeakerConfig {
        local_as: 65002,
        router_id: Ipv4Addr::new(10, 0, 0, 22),
        listen: Some(v6(pb)),
        ..SpeakerConfig::default()
    })
    .expect("speaker starts");
    let six = |name: &str, port: u16, asn: u32, passive: bool| PeerConfig {
        port,
        passive,
        local_address: Some(v6(0).ip()),
        hold_time: 9,
        keepalive_time: 3,
        connect_retry_time: 1,
        error_wait_time: (1, 2),
        families: vec![bgp::Afi::Ipv6],
        import: Some(Policy::accept_all()),
        export: Some(Policy::accept_all()),
        ..PeerConfig::new(name, v6(0).ip(), asn)
    };
    // a only waits; b dials a's IPv6 listener.
    a.add_peer(six("b", pb, 65002, true)).await.expect("add");
    b.add_peer(six("a", pa, 64512, false)).await.expect("add");
    b.originate(vec![(net("2001:db8:1::/64"), OriginAttrs::default())])
        .expect("originate");
    let ev = next_event(&mut a_ev, |e| matches!(e, RouteEvent::Best { .. })).await;
    assert!(
        matches!(ev, RouteEvent::Best { prefix, .. } if prefix == net("2001:db8:1::/64")),
        "{ev:?}"
    );
    let st = wait_state(&a, v6(0).ip(), State::Established).await;
    assert_eq!(st.port, pb);
    for s in [a, b] {
        s.shutdown(None).await.expect("shutdown");
    }
}
