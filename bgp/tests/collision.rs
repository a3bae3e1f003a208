//! Connection collisions (RFC 4271 §6.8) against a hand-driven peer over loopback (no
//! root), each message ordered by the test: the interleavings two real speakers produce
//! only now and then (two calico-nodes that both dial after a route-reflector change).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bgp::wire::encode::push_keepalive;
use bgp::wire::{OpenParams, encode_open};
use bgp::{Afi, OriginAttrs, PeerConfig, Policy, Speaker, SpeakerConfig, State};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const OPEN: u8 = 1;
const UPDATE: u8 = 2;
const NOTIFICATION: u8 = 3;
const KEEPALIVE: u8 = 4;

fn port() -> u16 {
    50000 + (std::process::id() % 5000) as u16
}

fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn read_message(stream: &mut TcpStream) -> Vec<u8> {
    let read = async {
        let mut msg = vec![0u8; 19];
        stream.read_exact(&mut msg).await?;
        let len = usize::from(u16::from_be_bytes([msg[16], msg[17]])).max(19);
        msg.resize(len, 0);
        stream.read_exact(&mut msg[19..]).await?;
        Ok::<_, std::io::Error>(msg)
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("a message in time")
        .expect("a whole message")
}

/// Reads messages until an UPDATE announcing `prefix` (a /26 of 192.168.x.0).
async fn read_until_announced(stream: &mut TcpStream, third_octet: u8) {
    let nlri = [26u8, 192, 168, third_octet];
    loop {
        let m = read_message(stream).await;
        if m[18] == UPDATE && m.windows(4).any(|w| w == nlri) {
            return;
        }
    }
}

fn open_and_keepalive(router_id: Ipv4Addr) -> Vec<u8> {
    let mut out = encode_open(&OpenParams {
        asn: 64512,
        hold_time: 9,
        router_id,
        families: vec![Afi::Ipv4],
        graceful_restart: Some((120, false)),
    })
    .expect("open");
    push_keepalive(&mut out);
    out
}

fn route(third_octet: u8) -> (IpNet, OriginAttrs) {
    let net = format!("192.168.{third_octet}.0/26").parse().expect("net");
    (net, OriginAttrs::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_connection_established_first_wins_over_our_own_still_in_open_sent() {
    let port = port();
    // Our speaker has the higher identifier: once both OPENs are in, §6.8 would keep the
    // connection it dialled. But the peer's connection is Established first, and the peer
    // (seeing it Established too) keeps it: so must we.
    let (speaker, _events) = Speaker::start(SpeakerConfig {
        local_as: 64512,
        router_id: Ipv4Addr::new(10, 0, 0, 9),
        listen: Some(SocketAddr::new(lo(5), port)),
        graceful_restart_time: 120,
        ..SpeakerConfig::default()
    })
    .expect("speaker starts");
    let peer_socket = TcpSocket::new_v4().expect("socket");
    peer_socket.set_reuseaddr(true).expect("reuseaddr");
    peer_socket
        .bind(SocketAddr::new(lo(6), port))
        .expect("bind");
    let listener = peer_socket.listen(4).expect("listen");
    speaker.originate(vec![route(1)]).expect("originate");
    speaker
        .add_peer(PeerConfig {
            port,
            local_address: Some(lo(5)),
            hold_time: 9,
            keepalive_time: 3,
            connect_retry_time: 1,
            import: Some(Policy::accept_all()),
            export: Some(Policy::accept_all()),
            ..PeerConfig::new("peer".to_string(), lo(6), 64512)
        })
        .await
        .expect("add peer");

    // Our connection: the peer takes our OPEN and says nothing (we stay in OpenSent).
    let (mut ours, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .expect("the speaker dials in time")
        .expect("accept");
    assert_eq!(read_message(&mut ours).await[18], OPEN);

    // The peer's connection: OPEN and KEEPALIVE, answered in full.
    let dial = TcpSocket::new_v4().expect("socket");
    dial.bind(SocketAddr::new(lo(6), 0)).expect("bind");
    let mut theirs = dial
        .connect(SocketAddr::new(lo(5), port))
        .await
        .expect("connect");
    theirs
        .write_all(&open_and_keepalive(Ipv4Addr::new(10, 0, 0, 2)))
        .await
        .expect("send");
    assert_eq!(read_message(&mut theirs).await[18], OPEN);
    assert_eq!(read_message(&mut theirs).await[18], KEEPALIVE);

    // The table goes out on the connection that is Established; ours is given up.
    read_until_announced(&mut theirs, 1).await;
    let n = read_message(&mut ours).await;
    assert_eq!(
        (n[18], n[19], n[20]),
        (NOTIFICATION, 6, 7),
        "Cease / Connection collision resolution on our connection"
    );

    // The session lives on the peer's connection alone.
    drop(ours);
    speaker.originate(vec![route(2)]).expect("originate");
    read_until_announced(&mut theirs, 2).await;
    let status = speaker.peer_status().await.expect("status");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].state, State::Established);
    speaker.shutdown(None).await.expect("shutdown");
}
