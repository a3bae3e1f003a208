//! Any bytes: decoding never panics, a decoded packet re-encodes to what it says, and a
//! session (Down, Init or Up) takes it and runs its timers without panicking.
#![no_main]

use std::time::{Duration, Instant};

use bfd::{ControlPacket, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pkt) = ControlPacket::decode(data) else {
        return;
    };
    assert_eq!(ControlPacket::decode(&pkt.encode()), Ok(pkt));
    let now = Instant::now();
    let mut s = Session::new(0x5eed, SessionConfig::default(), now);
    let _ = s.receive(&pkt, now);
    let _ = s.receive(&pkt, now + Duration::from_millis(1));
    for step in 1..5u64 {
        let at = now + Duration::from_millis(400 * step);
        let _ = s.poll(at);
        let _ = s.next_deadline(at);
    }
});
