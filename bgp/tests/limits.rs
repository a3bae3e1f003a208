//! Resource limits against misbehaving peers, over loopback (no root): a peer that stops
//! reading is dropped by the send hold timer (RFC 9687) or when our queue for it passes its
//! bound, a ROUTE-REFRESH flood re-encodes the Adj-RIB-Out at most once per interval, and a
//! peer sending too many routes meets its import limit (BIRD's `import limit` actions).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bgp::config::{ImportLimit, LimitAction};
use bgp::wire::encode::{push_keepalive, push_route_refresh};
use bgp::wire::{OpenParams, encode_open};
use bgp::{
    Afi, OriginAttrs, PeerConfig, PeerStatus, Policy, RouteEvent, Speaker, SpeakerConfig, State,
};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;

static PORT: AtomicU16 = AtomicU16::new(0);

/// A free-ish port per test (two per call, as loopback.rs does, from another range).
fn port() -> u16 {
    let base = 40000 + (std::process::id() % 10000) as u16;
    base + PORT.fetch_add(1, Ordering::Relaxed) * 2
}

fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn speaker(cfg: SpeakerConfig) -> Speaker {
    Speaker::start(cfg).expect("speaker starts").0
}

fn base_config(last: u8, port: u16) -> SpeakerConfig {
    SpeakerConfig {
        local_as: 64512,
        router_id: Ipv4Addr::new(10, 0, 0, last),
        listen: Some(SocketAddr::new(lo(last), port)),
        ..SpeakerConfig::default()
    }
}

fn peer(last: u8, port: u16, me: u8) -> PeerConfig {
    PeerConfig {
        port,
        local_address: Some(lo(me)),
        hold_time: 9,
        keepalive_time: 3,
        connect_retry_time: 1,
        error_wait_time: (1, 2),
        import: Some(Policy::accept_all()),
        export: Some(Policy::accept_all()),
        ..PeerConfig::new(format!("peer{last}"), lo(last), 64512)
    }
}

async fn status(s: &Speaker, addr: IpAddr) -> Option<PeerStatus> {
    s.peer_status()
        .await
        .ok()?
        .into_iter()
        .find(|p| p.address == addr)
}

/// Polls `s`'s status of `addr` until `f` holds (20 s at most).
async fn wait_status(s: &Speaker, addr: IpAddr, f: impl Fn(&PeerStatus) -> bool) -> PeerStatus {
    let mut last = None;
    for _ in 0..400 {
        if let Some(p) = status(s, addr).await {
            if f(&p) {
                return p;
            }
            last = Some(p);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("peer {addr}: condition never held; last status {last:?}");
}

/// `n` /32 routes with a distinct MED each, so that none share an UPDATE (bulk on the wire).
fn distinct_routes(n: u32) -> Vec<(IpNet, OriginAttrs)> {
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            let net = IpNet::new(IpAddr::V4(ip), 32).expect("prefix");
            (
                net,
                OriginAttrs {
                    med: Some(i),
                    ..OriginAttrs::default()
                },
            )
        })
        .collect()
}

/// A hand-driven BGP peer on `lo(last):port`: accepts our speaker's connection, answers
/// its OPEN, and then does only what the test says (reading or not).
struct RawPeer {
    stream: TcpStream,
}

impl RawPeer {
    /// Listens with a tiny receive buffer (so a peer that stops reading stops us soon),
    /// accepts, and completes the OPEN exchange.
    async fn accept(last: u8, port: u16) -> RawPeer {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        socket.bind(SocketAddr::new(lo(last), port)).expect("bind");
        let listener = socket.listen(4).expect("listen");
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("the speaker connects in time")
            .expect("accept");
        let mut open = encode_open(&OpenParams {
            asn: 64512,
            hold_time: 9,
            router_id: Ipv4Addr::new(10, 9, 9, last),
            families: vec![Afi::Ipv4],
            graceful_restart: None,
        })
        .expect("open");
        push_keepalive(&mut open);
        stream.write_all(&open).await.expect("send OPEN");
        let mut peer = RawPeer { stream };
        // The speaker's OPEN, then its KEEPALIVE: exactly those two messages, so that what
        // follows (the table) is read whole by the test.
        for want in [1u8, 4] {
            let got = tokio::time::timeout(Duration::from_secs(20), peer.read_message())
                .await
                .expect("the speaker answers in time")
                .expect("a message");
            assert_eq!(got[18], want, "message type");
        }
        peer
    }

    /// Reads exactly one BGP message.
    async fn read_message(&mut self) -> std::io::Result<Vec<u8>> {
        let mut msg = vec![0u8; 19];
        self.stream.read_exact(&mut msg).await?;
        let len = usize::from(u16::from_be_bytes([msg[16], msg[17]])).max(19);
        msg.resize(len, 0);
        self.stream.read_exact(&mut msg[19..]).await?;
        Ok(msg)
    }

    /// Sends a KEEPALIVE every second for `d` without reading anything.
    async fn keep_alive_without_reading(&mut self, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        while tokio::time::Instant::now() < end {
            let mut k = Vec::new();
            push_keepalive(&mut k);
            if self.stream.write_all(&k).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Reads whole messages until `quiet` passes without any (or `limit` in all); returns
    /// the UPDATE messages and bytes received.
    async fn read_until_quiet(&mut self, quiet: Duration, limit: Duration) -> (usize, usize) {
        let end = tokio::time::Instant::now() + limit;
        let (mut updates, mut bytes) = (0, 0);
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 65536];
        loop {
            let until = (tokio::time::Instant::now() + quiet).min(end);
            let Ok(Ok(n)) = tokio::time::timeout_at(until, self.stream.read(&mut chunk)).await
            else {
                break;
            };
            if n == 0 {
                break;
            }
            bytes += n;
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 19 {
                let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
                if len < 19 || buf.len() < len {
                    break;
                }
                if buf[18] == 2 {
                    updates += 1;
                }
                buf.drain(..len);
            }
        }
        (updates, bytes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_dropped_by_the_send_hold_timer() {
    let port = port();
    let spk = speaker(SpeakerConfig {
        send_hold_time: 2,
        ..base_config(81, port)
    });
    let raw = tokio::spawn(RawPeer::accept(82, port));
    spk.add_peer(peer(82, port, 81)).await.expect("add peer");
    let mut raw = raw.await.expect("raw peer");
    wait_status(&spk, lo(82), |p| p.state == State::Established).await;
    // Far more than the socket buffers hold, to a peer that never reads it; its keepalives
    // keep the hold timer happy, so only the send hold timer can notice.
    spk.originate(distinct_routes(200_000)).expect("originate");
    let keepalives = raw.keep_alive_without_reading(Duration::from_secs(15));
    let down = wait_status(&spk, lo(82), |p| {
        p.state != State::Established
            && p.last_error
                .as_deref()
                .is_some_and(|e| e.contains("send hold timer expired"))
    });
    tokio::select! {
        s = down => println!("dropped: {:?}", s.last_error),
        () = keepalives => panic!("still Established after 15 s of a peer reading nothing"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_queue_past_its_bound_resets_the_session() {
    let port = port();
    let spk = speaker(SpeakerConfig {
        send_hold_time: 0,
        max_send_queue: 1 << 20,
        ..base_config(83, port)
    });
    let raw = tokio::spawn(RawPeer::accept(84, port));
    spk.add_peer(peer(84, port, 83)).await.expect("add peer");
    let mut raw = raw.await.expect("raw peer");
    wait_status(&spk, lo(84), |p| p.state == State::Established).await;
    // A table past the bound is taken whole (nothing waits yet); the peer reads none of
    // it, so the next change finds the queue still full.
    spk.originate(distinct_routes(200_000)).expect("originate");
    tokio::time::sleep(Duration::from_secs(1)).await;
    spk.originate(distinct_routes(200_100))
        .expect("originate more");
    let keepalives = raw.keep_alive_without_reading(Duration::from_secs(15));
    let down = wait_status(&spk, lo(84), |p| {
        p.last_error
            .as_deref()
            .is_some_and(|e| e.contains("send queue full"))
    });
    tokio::select! {
        s = down => println!("reset: {:?}", s.last_error),
        () = keepalives => panic!("the queue grew without bound"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_larger_than_the_send_queue_bound_reaches_a_peer_that_reads() {
    let port = port();
    let spk = speaker(SpeakerConfig {
        send_hold_time: 0,
        max_send_queue: 1 << 20,
        ..base_config(87, port)
    });
    // 200,000 UPDATEs (one per route: distinct MEDs), about ten times the bound.
    spk.originate(distinct_routes(200_000)).expect("originate");
    let raw = tokio::spawn(RawPeer::accept(88, port));
    // No hold timer (RFC 4271 §4.2: 0): the raw peer sends no KEEPALIVE while it reads,
    // and on a loaded machine the table takes longer than a hold time to pass.
    let no_hold = PeerConfig {
        hold_time: 0,
        keepalive_time: 0,
        ..peer(88, port, 87)
    };
    spk.add_peer(no_hold).await.expect("add peer");
    let mut raw = raw.await.expect("raw peer");
    wait_status(&spk, lo(88), |p| p.state == State::Established).await;
    let (updates, bytes) = raw
        .read_until_quiet(Duration::from_millis(1_500), Duration::from_secs(60))
        .await;
    println!("a reading peer got {updates} UPDATEs ({bytes} bytes) past a 1 MiB bound");
    assert!(updates >= 200_000, "only {updates} UPDATEs arrived");
    let s = status(&spk, lo(88)).await.expect("status");
    assert_eq!(s.state, State::Established, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_refresh_flood_is_coalesced_to_one_re_advertisement_per_interval() {
    let port = port();
    let spk = speaker(SpeakerConfig {
        route_refresh_min_interval_ms: 1_000,
        ..base_config(85, port)
    });
    spk.originate(distinct_routes(2_000)).expect("originate");
    let raw = tokio::spawn(RawPeer::accept(86, port));
    spk.add_peer(peer(86, port, 85)).await.expect("add peer");
    let mut raw = raw.await.expect("raw peer");
    wait_status(&spk, lo(86), |p| p.state == State::Established).await;
    // The first full table.
    let (table, _) = raw
        .read_until_quiet(Duration::from_millis(1_500), Duration::from_secs(30))
        .await;
    assert!(table >= 2_000, "initial table: {table} UPDATEs");
    let mut flood = Vec::new();
    for _ in 0..200 {
        push_route_refresh(&mut flood, Afi::Ipv4);
    }
    raw.stream.write_all(&flood).await.expect("flood");
    // One re-advertisement now, one more for the refreshes coalesced after 1 s.
    let (after, _) = raw
        .read_until_quiet(Duration::from_millis(2_500), Duration::from_secs(30))
        .await;
    println!("200 ROUTE-REFRESH in a burst: {after} UPDATEs back (a table is {table})");
    assert!(after >= table, "the refresh is answered: {after} UPDATEs");
    assert!(
        after <= 3 * table,
        "200 refreshes re-encoded the table {} times",
        after / table
    );
}

/// Two speakers: `a` imports from `b` under `limit`, `b` announces `n` routes. Also
/// returns `a`'s events.
async fn limited_pair(
    limit: ImportLimit,
    n: u32,
) -> (Speaker, Speaker, IpAddr, u16, UnboundedReceiver<RouteEvent>) {
    let port = port();
    let (a, a_events) =
        Speaker::start(base_config(91 + (port % 50) as u8 * 2, port)).expect("speaker starts");
    let a_last = 91 + (port % 50) as u8 * 2;
    let b_last = a_last + 1;
    let b = speaker(base_config(b_last, port));
    let mut to_b = peer(b_last, port, a_last);
    to_b.import_limit = Some(limit);
    a.add_peer(to_b).await.expect("a peers with b");
    b.add_peer(peer(a_last, port, b_last))
        .await
        .expect("b peers with a");
    b.originate(distinct_routes(n)).expect("originate");
    (a, b, lo(b_last), port, a_events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_limit_that_blocks_keeps_the_session_and_refuses_further_routes() {
    let limit = ImportLimit {
        max: 10,
        action: LimitAction::Block,
    };
    let (a, _b, b_addr, port, _) = limited_pair(limit, 50).await;
    wait_status(&a, b_addr, |p| p.note.is_some()).await;
    // Whatever of the 50 was still on its way has arrived.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = status(&a, b_addr).await.expect("status");
    assert_eq!(s.state, State::Established);
    assert_eq!((s.prefixes_received, s.prefixes_accepted), (10, 10));
    assert!(
        s.bird_info()
            .contains("import limit 10 reached: further routes refused"),
        "{}",
        s.bird_info()
    );
    assert_eq!(a.learned_routes().await.expect("learned").len(), 10);
    // The 40 refused routes are not held either: the limit bounds a peer's memory.
    let mut held = 0;
    for (prefix, _) in distinct_routes(50) {
        held += a.explain(prefix).await.expect("explain").len();
    }
    assert_eq!(held, 10, "paths held for b's 50 routes");
    // Raised, the limit lets the rest in: they are asked for again (ROUTE-REFRESH).
    let a_last = match b_addr {
        IpAddr::V4(v4) => v4.octets()[3] - 1,
        IpAddr::V6(_) => unreachable!("loopback v4"),
    };
    let mut raised = peer(a_last + 1, port, a_last);
    raised.import_limit = Some(ImportLimit {
        max: 100,
        action: LimitAction::Block,
    });
    a.update_peer(raised).await.expect("reconfigure");
    let s = wait_status(&a, b_addr, |p| p.prefixes_accepted == 50).await;
    assert_eq!(s.state, State::Established);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_limit_that_disables_keeps_the_session_down_until_reconfigured() {
    let limit = ImportLimit {
        max: 10,
        action: LimitAction::Disable,
    };
    let (a, _b, b_addr, port, _) = limited_pair(limit, 50).await;
    let s = wait_status(&a, b_addr, |p| {
        p.state != State::Established && p.note.is_some()
    })
    .await;
    assert!(
        s.bird_info()
            .contains("import limit 10 exceeded: session disabled"),
        "{}",
        s.bird_info()
    );
    assert!(a.learned_routes().await.expect("learned").is_empty());
    // It stays down (the error wait is 1-2 s)...
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = status(&a, b_addr).await.expect("status");
    assert_ne!(s.state, State::Established, "came back by itself");
    // ...until the operator raises the limit.
    let a_last = match b_addr {
        IpAddr::V4(v4) => v4.octets()[3] - 1,
        IpAddr::V6(_) => unreachable!("loopback v4"),
    };
    let mut raised = peer(a_last + 1, port, a_last);
    raised.import_limit = Some(ImportLimit {
        max: 100,
        action: LimitAction::Disable,
    });
    a.update_peer(raised).await.expect("reconfigure");
    let s = wait_status(&a, b_addr, |p| {
        p.state == State::Established && p.prefixes_accepted == 50
    })
    .await;
    assert_eq!(s.note, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_limit_that_restarts_resets_the_session_and_tries_again_later() {
    let limit = ImportLimit {
        max: 10,
        action: LimitAction::Restart,
    };
    let (a, _b, b_addr, _, mut events) = limited_pair(limit, 50).await;
    // Each session comes up, gets the 50 routes, and is reset; after the error wait the
    // next one does the same.
    let mut ups = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ups < 2 {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(RouteEvent::PeerUp { peer, .. })) if peer == b_addr => {
                ups += 1;
                println!("up #{ups} at {:?}", std::time::Instant::now());
            }
            Ok(Some(RouteEvent::PeerDown { peer, reason, .. })) if peer == b_addr => {
                println!("down ({reason}) at {:?}", std::time::Instant::now());
            }
            Ok(Some(_)) => {}
            _ => panic!("the session came up {ups} times, not twice"),
        }
    }
    let s = wait_status(&a, b_addr, |p| p.state != State::Established).await;
    assert!(
        s.bird_info()
            .contains("import limit 10 exceeded: session restarted"),
        "{}",
        s.bird_info()
    );
}
