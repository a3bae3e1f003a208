//! Bidirectional Forwarding Detection for calico-node's BGP sessions: RFC 5880
//! asynchronous mode (no demand mode, no echo, no authentication: a packet with the A bit
//! is dropped, as §6.8.6 says for a session without authentication) over RFC 5881 single
//! hop UDP (port 3784, TTL 255 both ways, source ports 49152-65535).
//!
//! [`packet`] is the wire format with §6.8.6's reception checks, [`session`] the pure
//! state machine (timers negotiated as §6.8.2-6.8.4 say, with the poll sequence), and
//! [`driver`] the tokio task that moves packets between sessions and one UDP socket.

pub mod driver;
pub mod packet;
pub mod session;

pub use driver::{Bfd, BfdEvent, SessionStatus};
pub use packet::{ControlPacket, Diag, PacketError, State};
pub use session::{Session, SessionConfig, Transition};
