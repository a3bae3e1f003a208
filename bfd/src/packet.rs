//! The BFD Control packet (RFC 5880 §4.1) and the checks §6.8.6 makes before a packet
//! reaches a session. Decoding never panics: anything short, inconsistent or unsupported
//! is a [`PacketError`] naming the rule, and the caller drops the packet.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// The mandatory section's length; the only length without authentication.
pub const MIN_LEN: usize = 24;

/// A session state (§4.1 "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 0x3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// As BIRD's `show bfd sessions` and FRR's `show bfd peers` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session went down (§4.1 "Diag"); codes this implementation does not send are
/// kept as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    None,
    DetectionTimeExpired,
    EchoFailed,
    NeighborSignaledDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    Other(u8),
}

impl Diag {
    fn from_bits(bits: u8) -> Diag {
        match bits & 0x1f {
            0 => Diag::None,
            1 => Diag::DetectionTimeExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborSignaledDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            other => Diag::Other(other),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::DetectionTimeExpired => 1,
            Diag::EchoFailed => 2,
            Diag::NeighborSignaledDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Other(b) => b & 0x1f,
        }
    }

    /// A short text for logs and node status.
    pub fn as_str(self) -> &'static str {
        match self {
            Diag::None => "no diagnostic",
            Diag::DetectionTimeExpired => "control detection time expired",
            Diag::EchoFailed => "echo function failed",
            Diag::NeighborSignaledDown => "neighbor signaled session down",
            Diag::ForwardingPlaneReset => "forwarding plane reset",
            Diag::PathDown => "path down",
            Diag::ConcatenatedPathDown => "concatenated path down",
            Diag::AdministrativelyDown => "administratively down",
            Diag::ReverseConcatenatedPathDown => "reverse concatenated path down",
            Diag::Other(_) => "unknown diagnostic",
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Control packet (without authentication, which this implementation does not use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub required_min_echo_rx: Duration,
}

/// Why a received packet is dropped (§6.8.6's checks, in its order).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("{0} bytes is shorter than a BFD Control packet (24)")]
    Short(usize),
    #[error("version {0}, not 1")]
    Version(u8),
    #[error("length field {length} is below 24 or beyond the {received} bytes received")]
    Length { length: usize, received: usize },
    #[error("detect multiplier 0")]
    DetectMultZero,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator 0")]
    MyDiscriminatorZero,
    #[error("your discriminator 0 in state {0}")]
    YourDiscriminatorZero(State),
    #[error("authentication present, none configured")]
    Authentication,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl ControlPacket {
    /// Decodes and checks `bytes` (one UDP payload).
    pub fn decode(bytes: &[u8]) -> Result<ControlPacket, PacketError> {
        if bytes.len() < MIN_LEN {
            return Err(PacketError::Short(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != 1 {
            return Err(PacketError::Version(version));
        }
        let flags = bytes[1];
        let auth = flags & 0x04 != 0;
        let length = usize::from(bytes[3]);
        let min = if auth { MIN_LEN + 2 } else { MIN_LEN };
        if length < min || length > bytes.len() {
            return Err(PacketError::Length {
                length,
                received: bytes.len(),
            });
        }
        let detect_mult = bytes[2];
        if detect_mult == 0 {
            return Err(PacketError::DetectMultZero);
        }
        if flags & 0x01 != 0 {
            return Err(PacketError::Multipoint);
        }
        let state = State::from_bits(flags >> 6);
        let my_discriminator = u32_at(bytes, 4);
        if my_discriminator == 0 {
            return Err(PacketError::MyDiscriminatorZero);
        }
        let your_discriminator = u32_at(bytes, 8);
        if your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(PacketError::YourDiscriminatorZero(state));
        }
        if auth {
            return Err(PacketError::Authentication);
        }
        Ok(ControlPacket {
            diag: Diag::from_bits(bytes[0]),
            state,
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult,
            my_discriminator,
            your_discriminator,
            desired_min_tx: Duration::from_micros(u32_at(bytes, 12).into()),
            required_min_rx: Duration::from_micros(u32_at(bytes, 16).into()),
            required_min_echo_rx: Duration::from_micros(u32_at(bytes, 20).into()),
        })
    }

    /// The packet on the wire.
    pub fn encode(&self) -> [u8; MIN_LEN] {
        let mut b = [0u8; MIN_LEN];
        b[0] = (1 << 5) | self.diag.bits();
        b[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = MIN_LEN as u8;
        b[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        b[12..16].copy_from_slice(&micros(self.desired_min_tx).to_be_bytes());
        b[16..20].copy_from_slice(&micros(self.required_min_rx).to_be_bytes());
        b[20..24].copy_from_slice(&micros(self.required_min_echo_rx).to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> ControlPacket {
        ControlPacket {
            diag: Diag::None,
            state: State::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 7,
            your_discriminator: 9,
            desired_min_tx: Duration::from_millis(100),
            required_min_rx: Duration::from_millis(100),
            required_min_echo_rx: Duration::ZERO,
        }
    }

    #[test]
    fn a_packet_survives_encode_and_decode() {
        let p = up();
        assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
    }

    /// The bytes laid out by hand from §4.1's figure: version 1, no diagnostic, Down, mult
    /// 5, my discriminator 0x0a5b3c01, your 0, 1 s desired TX, 10 ms required RX.
    #[test]
    fn a_packet_laid_out_as_the_rfc_draws_it_decodes() {
        let bytes = [
            0x20, 0x40, 0x05, 0x18, 0x0a, 0x5b, 0x3c, 0x01, 0, 0, 0, 0, 0x00, 0x0f, 0x42, 0x40,
            0x00, 0x00, 0x27, 0x10, 0, 0, 0, 0,
        ];
        let p = ControlPacket::decode(&bytes).expect("valid");
        assert_eq!(p.state, State::Down);
        assert_eq!(p.detect_mult, 5);
        assert_eq!(p.my_discriminator, 0x0a5b_3c01);
        assert_eq!(p.desired_min_tx, Duration::from_secs(1));
        assert_eq!(p.required_min_rx, Duration::from_millis(10));
        assert_eq!(p.encode(), bytes);
    }

    #[test]
    fn every_rule_of_section_6_8_6_drops_its_packet() {
        let good = up().encode();
        let with = |f: &dyn Fn(&mut [u8; 24])| {
            let mut b = good;
            f(&mut b);
            ControlPacket::decode(&b)
        };
        assert_eq!(
            ControlPacket::decode(&good[..23]),
            Err(PacketError::Short(23))
        );
        assert_eq!(
            with(&|b| b[0] = (2 << 5) | (b[0] & 0x1f)),
            Err(PacketError::Version(2))
        );
        assert!(matches!(
            with(&|b| b[3] = 23),
            Err(PacketError::Length { .. })
        ));
        assert!(matches!(
            with(&|b| b[3] = 25),
            Err(PacketError::Length { .. })
        ));
        assert_eq!(with(&|b| b[2] = 0), Err(PacketError::DetectMultZero));
        assert_eq!(with(&|b| b[1] |= 0x01), Err(PacketError::Multipoint));
        assert_eq!(
            with(&|b| b[4..8].fill(0)),
            Err(PacketError::MyDiscriminatorZero)
        );
        assert_eq!(
            with(&|b| b[8..12].fill(0)),
            Err(PacketError::YourDiscriminatorZero(State::Up))
        );
        // Your discriminator 0 is fine while Down.
        assert!(
            with(&|b| {
                b[8..12].fill(0);
                b[1] = (b[1] & 0x3f) | (1 << 6);
            })
            .is_ok()
        );
        let mut long = good.to_vec();
        long.extend_from_slice(&[1, 2, 3]);
        long[3] = 27;
        long[1] |= 0x04;
        assert_eq!(
            ControlPacket::decode(&long),
            Err(PacketError::Authentication)
        );
    }

    #[test]
    fn no_input_panics() {
        for len in 0..40 {
            for fill in [0u8, 0x20, 0xff] {
                let _ = ControlPacket::decode(&vec![fill; len]);
            }
        }
    }
}
