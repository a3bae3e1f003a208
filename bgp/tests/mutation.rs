//! Bounded, deterministic random-mutation test of the whole receive path (framing, OPEN /
//! UPDATE / NOTIFICATION / ROUTE-REFRESH decoding with RFC 7606, the session FSM and the
//! RIB), over mutations of valid messages. It is the stable-Rust stand-in for the cargo-fuzz
//! target in `bgp/fuzz/` and runs in seconds: no input may panic, and zettabgp must never be
//! handed an attribute our pre-pass let through that makes it panic (that would be caught,
//! but would mean the pre-pass is incomplete).
//!
//! `BGP_MUTATION_ITERS=<n>` changes the number of mutated messages (default 60 000),
//! `BGP_MUTATION_SEED=<n>` the seed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgp::fsm::State;
use bgp::prefix::{Afi, Prefix4, Prefix6};
use bgp::receive::ReceivePath;
use bgp::wire::encode::{
    encode_path_attrs, push_announce4, push_announce6, push_end_of_rib, push_keepalive,
    push_notification, push_route_refresh, push_withdraw4, push_withdraw6,
};
use bgp::wire::{LargeCommunity, Notification, OpenParams, PathAttrs, RawAttr, encode_open};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (asn, gr) in [(65001u32, Some((120u16, true))), (4_200_000_000, None)] {
        v.push(
            encode_open(&OpenParams {
                asn,
                hold_time: 90,
                router_id: Ipv4Addr::new(10, 0, 0, 2),
                families: vec![Afi::Ipv4, Afi::Ipv6],
                graceful_restart: gr,
            })
            .expect("open"),
        );
    }
    let attrs = PathAttrs {
        as_path: Arc::from(vec![65001u32, 65002, 65003]),
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        med: Some(10),
        local_pref: Some(200),
        atomic_aggregate: true,
        aggregator: Some((65001, Ipv4Addr::new(1, 1, 1, 1))),
        communities: vec![0xfde9_0001, 0xffff_ff01],
        large_communities: vec![LargeCommunity(65001, 1, 2)],
        ext_communities: vec![0x0002_fde9_0000_0001],
        originator_id: Some(Ipv4Addr::new(10, 9, 9, 9)),
        cluster_list: vec![Ipv4Addr::new(1, 1, 1, 1)],
        unknown: vec![RawAttr {
            flags: 0xc0,
            type_code: 99,
            value: vec![1, 2, 3],
        }],
        ..PathAttrs::default()
    };
    let p4: Vec<Prefix4> = (0..40u32)
        .map(|i| Prefix4::from_bits(0x0a00_0000 + (i << 8), (16 + i % 17) as u8).expect("p"))
        .collect();
    let p6: Vec<Prefix6> = (0..20u16)
        .map(|i| {
            Prefix6::new(
                Ipv6Addr::new(0xfd00, i, 0, 0, 0, 0, 0, 0),
                48 + (i % 80) as u8,
            )
            .expect("p")
        })
        .collect();
    let mut u = Vec::new();
    push_announce4(
        &mut u,
        &encode_path_attrs(&attrs, Afi::Ipv4).expect("a"),
        &p4,
    )
    .expect("u");
    v.push(u);
    let mut a6 = attrs.clone();
    a6.next_hop = Some(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)));
    let mut u = Vec::new();
    push_announce6(
        &mut u,
        &encode_path_attrs(&a6, Afi::Ipv6).expect("a"),
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
        &p6,
    )
    .expect("u");
    v.push(u);
    let mut u = Vec::new();
    push_withdraw4(&mut u, &p4);
    v.push(u);
    let mut u = Vec::new();
    push_withdraw6(&mut u, &p6).expect("w");
    v.push(u);
    for afi in [Afi::Ipv4, Afi::Ipv6] {
        let mut u = Vec::new();
        push_end_of_rib(&mut u, afi);
        v.push(u);
        let mut r = Vec::new();
        push_route_refresh(&mut r, afi);
        v.push(r);
    }
    let mut k = Vec::new();
    push_keepalive(&mut k);
    v.push(k);
    let mut n = Vec::new();
    push_notification(&mut n, &Notification::admin_shutdown(Some("bye")));
    v.push(n);
    v
}

fn mutate(rng: &mut Rng, msg: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut m = msg.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(9) {
            // Flip a byte (bias towards the header and attribute headers).
            0 | 1 => {
                let i = if rng.below(2) == 0 {
                    rng.below(m.len().min(40))
                } else {
                    rng.below(m.len())
                };
                if let Some(b) = m.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            // Set a byte to an interesting value.
            2 => {
                let i = rng.below(m.len());
                let vals = [0u8, 1, 2, 3, 4, 0x7f, 0x80, 0x90, 0xff, 14, 15, 32];
                if let Some(b) = m.get_mut(i) {
                    *b = vals[rng.below(vals.len())];
                }
            }
            // Truncate.
            3 => {
                let l = rng.below(m.len() + 1);
                m.truncate(l);
            }
            // Insert random bytes.
            4 => {
                let i = rng.below(m.len() + 1);
                for _ in 0..1 + rng.below(8) {
                    m.insert(i, rng.next() as u8);
                }
            }
            // Delete a range.
            5 => {
                if !m.is_empty() {
                    let i = rng.below(m.len());
                    let j = (i + 1 + rng.below(8)).min(m.len());
                    m.drain(i..j);
                }
            }
            // Fix the header length to the actual length (so the body gets decoded).
            6 => {
                if m.len() >= 19 {
                    let l = m.len().min(4096) as u16;
                    m[16..18].copy_from_slice(&l.to_be_bytes());
                }
            }
            // Splice in part of another message.
            7 => {
                let other = &corpus[rng.below(corpus.len())];
                let a = rng.below(other.len());
                let b = (a + rng.below(64)).min(other.len());
                let i = rng.below(m.len() + 1);
                m.splice(i..i, other[a..b].iter().copied());
            }
            // Random 16-bit length field anywhere.
            _ => {
                if m.len() >= 2 {
                    let i = rng.below(m.len() - 1);
                    let v = rng.below(600) as u16;
                    m[i..i + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
    }
    if rng.below(3) == 0 && m.len() >= 19 {
        let l = m.len().min(4096) as u16;
        m[16..18].copy_from_slice(&l.to_be_bytes());
    }
    m
}

/// The receive path with the session up (the peer's OPEN and KEEPALIVE fed first).
fn established(ebgp: bool) -> ReceivePath {
    let mut rx = ReceivePath::new(ebgp, true);
    let open = rx.peer_open();
    rx.feed(&open);
    assert_eq!(rx.state(), State::Established);
    rx
}

#[test]
fn mutated_messages_never_panic_the_receive_path() {
    let iters: usize = std::env::var("BGP_MUTATION_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let seed: u64 = std::env::var("BGP_MUTATION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_b9f0_0d15_ea5e);
    let corpus = corpus();
    let mut rng = Rng(seed | 1);
    let mut panics = 0;
    let mut rx = established(true);
    let mut resets = 0;
    for i in 0..iters {
        if i % 5_000 == 0 {
            // Alternate eBGP and iBGP sessions.
            rx = established(i / 5_000 % 2 == 0);
        }
        let base = &corpus[rng.below(corpus.len())];
        let m = mutate(&mut rng, base, &corpus);
        // Half the time a valid message precedes the mutated one in the same read.
        let mut bytes = Vec::new();
        if rng.below(2) == 0 {
            bytes.extend_from_slice(&corpus[2 + rng.below(corpus.len() - 2)]);
        }
        bytes.extend_from_slice(&m);
        panics += rx.feed(&bytes);
        if rx.state() != State::Established {
            resets += 1;
            rx = established(rx.is_ebgp());
        }
    }
    assert_eq!(
        panics, 0,
        "the RFC 7606 pre-pass let through attributes that panicked zettabgp"
    );
    assert!(resets > 0, "some mutations must be session resets");
}

#[test]
fn every_corpus_message_is_valid() {
    let mut rx = established(true);
    for m in corpus().iter().skip(2).take(7) {
        rx.feed(m);
        assert_eq!(rx.state(), State::Established);
    }
}
