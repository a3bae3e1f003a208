//! Fuzzes the whole receive path: framing, message decoding (with RFC 7606), the session FSM
//! and the RIB. The first input byte picks the session (OpenSent or Established, eBGP or
//! iBGP); the rest is the byte stream from the peer. No input may panic; zettabgp must never
//! be reached with an attribute that makes it panic (the RFC 7606 pre-pass must catch it).
#![no_main]

use bgp::receive::ReceivePath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let mut rx = ReceivePath::new(sel & 1 == 0, sel & 4 != 0);
    let mut bytes = if sel & 2 == 0 {
        rx.peer_open()
    } else {
        Vec::new()
    };
    bytes.extend_from_slice(stream);
    assert_eq!(
        rx.feed(&bytes),
        0,
        "zettabgp panicked on an attribute the pre-pass accepted"
    );
});
