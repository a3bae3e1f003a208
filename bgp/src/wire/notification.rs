//! NOTIFICATION messages (RFC 4271 §4.5), built by hand: zettabgp's
//! `BgpNotificationMessage` carries only two data octets, too few for the offending
//! attribute (RFC 4271 §6.3) or an RFC 8203 / RFC 9003 shutdown communication.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Error codes (RFC 4271 §4.5, RFC 9687).
pub mod code {
    /// Message Header Error.
    pub const HEADER: u8 = 1;
    /// OPEN Message Error.
    pub const OPEN: u8 = 2;
    /// UPDATE Message Error.
    pub const UPDATE: u8 = 3;
    /// Hold Timer Expired.
    pub const HOLD_TIMER: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Cease.
    pub const CEASE: u8 = 6;
    /// ROUTE-REFRESH Message Error (RFC 7313).
    pub const ROUTE_REFRESH: u8 = 7;
    /// Send Hold Timer Expired (RFC 9687).
    pub const SEND_HOLD_TIMER: u8 = 8;
}

/// Subcodes, grouped by error code.
pub mod subcode {
    /// Message Header Error subcodes.
    pub mod header {
        /// Connection Not Synchronized (bad marker).
        pub const NOT_SYNCHRONIZED: u8 = 1;
        /// Bad Message Length (data: the length field).
        pub const BAD_LENGTH: u8 = 2;
        /// Bad Message Type (data: the type octet).
        pub const BAD_TYPE: u8 = 3;
    }
    /// OPEN Message Error subcodes.
    pub mod open {
        /// Unspecific (RFC 4271 §6.2: a recognised but malformed optional parameter).
        pub const UNSPECIFIC: u8 = 0;
        /// Unsupported Version Number (data: highest supported version, 2 octets).
        pub const UNSUPPORTED_VERSION: u8 = 1;
        /// Bad Peer AS.
        pub const BAD_PEER_AS: u8 = 2;
        /// Bad BGP Identifier.
        pub const BAD_BGP_ID: u8 = 3;
        /// Unsupported Optional Parameter.
        pub const UNSUPPORTED_OPT_PARAM: u8 = 4;
        /// Unacceptable Hold Time.
        pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
        /// Unsupported Capability (RFC 5492; data: the capabilities concerned).
        pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    }
    /// UPDATE Message Error subcodes.
    pub mod update {
        /// Malformed Attribute List.
        pub const MALFORMED_ATTR_LIST: u8 = 1;
        /// Unrecognized Well-known Attribute.
        pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
        /// Missing Well-known Attribute.
        pub const MISSING_WELL_KNOWN: u8 = 3;
        /// Attribute Flags Error.
        pub const ATTR_FLAGS: u8 = 4;
        /// Attribute Length Error.
        pub const ATTR_LENGTH: u8 = 5;
        /// Invalid ORIGIN Attribute.
        pub const INVALID_ORIGIN: u8 = 6;
        /// Invalid NEXT_HOP Attribute.
        pub const INVALID_NEXT_HOP: u8 = 8;
        /// Optional Attribute Error.
        pub const OPTIONAL_ATTR: u8 = 9;
        /// Invalid Network Field.
        pub const INVALID_NETWORK: u8 = 10;
        /// Malformed AS_PATH.
        pub const MALFORMED_AS_PATH: u8 = 11;
    }
    /// FSM Error subcodes (RFC 6608).
    pub mod fsm {
        /// Receive Unexpected Message in OpenSent State.
        pub const IN_OPENSENT: u8 = 1;
        /// Receive Unexpected Message in OpenConfirm State.
        pub const IN_OPENCONFIRM: u8 = 2;
        /// Receive Unexpected Message in Established State.
        pub const IN_ESTABLISHED: u8 = 3;
    }
    /// Cease subcodes (RFC 4486, RFC 8538).
    pub mod cease {
        /// Maximum Number of Prefixes Reached.
        pub const MAX_PREFIXES: u8 = 1;
        /// Administrative Shutdown (RFC 8203 text allowed).
        pub const ADMIN_SHUTDOWN: u8 = 2;
        /// Peer De-configured.
        pub const PEER_DECONFIGURED: u8 = 3;
        /// Administrative Reset (RFC 8203 text allowed).
        pub const ADMIN_RESET: u8 = 4;
        /// Connection Rejected.
        pub const CONNECTION_REJECTED: u8 = 5;
        /// Other Configuration Change.
        pub const CONFIG_CHANGE: u8 = 6;
        /// Connection Collision Resolution.
        pub const COLLISION: u8 = 7;
        /// Out of Resources.
        pub const OUT_OF_RESOURCES: u8 = 8;
        /// Hard Reset (RFC 8538).
        pub const HARD_RESET: u8 = 9;
        /// BFD Down (RFC 9384).
        pub const BFD_DOWN: u8 = 10;
    }
}

/// A NOTIFICATION: error code, subcode and data, exactly as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Error code ([`code`]).
    pub code: u8,
    /// Error subcode ([`subcode`]).
    pub subcode: u8,
    /// Data field (may be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION with the given code, subcode and data.
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Notification {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// Cease / Administrative Shutdown, with an optional RFC 8203 / RFC 9003 shutdown
    /// communication (UTF-8, cut to 255 octets on a character boundary).
    pub fn admin_shutdown(message: Option<&str>) -> Notification {
        Notification::new(
            code::CEASE,
            subcode::cease::ADMIN_SHUTDOWN,
            shutdown_data(message),
        )
    }

    /// Cease / Administrative Reset, with an optional shutdown communication.
    pub fn admin_reset(message: Option<&str>) -> Notification {
        Notification::new(
            code::CEASE,
            subcode::cease::ADMIN_RESET,
            shutdown_data(message),
        )
    }

    /// Hold Timer Expired.
    pub fn hold_timer_expired() -> Notification {
        Notification::new(code::HOLD_TIMER, 0, Vec::new())
    }

    /// Cease / Connection Collision Resolution.
    pub fn collision() -> Notification {
        Notification::new(code::CEASE, subcode::cease::COLLISION, Vec::new())
    }

    /// An UPDATE Message Error with the given subcode and data.
    pub fn update(subcode: u8, data: Vec<u8>) -> Notification {
        Notification::new(code::UPDATE, subcode, data)
    }

    /// An OPEN Message Error with the given subcode and data.
    pub fn open(subcode: u8, data: Vec<u8>) -> Notification {
        Notification::new(code::OPEN, subcode, data)
    }

    /// The message body (code, subcode, data), without the 19-octet header.
    pub fn body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 + self.data.len());
        v.push(self.code);
        v.push(self.subcode);
        v.extend_from_slice(&self.data);
        v
    }

    /// Decodes a NOTIFICATION body (at least 2 octets; framing checked that).
    pub fn decode(body: &[u8]) -> Notification {
        Notification {
            code: body.first().copied().unwrap_or(0),
            subcode: body.get(1).copied().unwrap_or(0),
            data: body.get(2..).unwrap_or_default().to_vec(),
        }
    }

    /// The RFC 8203 / RFC 9003 shutdown communication carried by a Cease / Administrative
    /// Shutdown or Reset, if any and well formed.
    pub fn shutdown_message(&self) -> Option<String> {
        if self.code != code::CEASE
            || !matches!(
                self.subcode,
                subcode::cease::ADMIN_SHUTDOWN | subcode::cease::ADMIN_RESET
            )
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..len as usize)?;
        if text.is_empty() {
            return None;
        }
        std::str::from_utf8(text).ok().map(str::to_owned)
    }

    /// The description BIRD prints for this error ("Hold timer expired", "Bad peer AS"...),
    /// followed by the shutdown communication when there is one.
    pub fn text(&self) -> String {
        let base = describe(self.code, self.subcode);
        match self.shutdown_message() {
            Some(m) => format!("{base}: \"{m}\""),
            None => base,
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.text(), self.code, self.subcode)
    }
}

fn shutdown_data(message: Option<&str>) -> Vec<u8> {
    let Some(m) = message.filter(|m| !m.is_empty()) else {
        return Vec::new();
    };
    let mut end = m.len().min(255);
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    let mut v = Vec::with_capacity(end + 1);
    v.push(end as u8);
    v.extend_from_slice(&m.as_bytes()[..end]);
    v
}

/// BIRD's wording for each code / subcode, so status lines read like `birdc show protocols`.
fn describe(code: u8, sub: u8) -> String {
    let s = match (code, sub) {
        (1, 1) => "Connection not synchronized",
        (1, 2) => "Bad message length",
        (1, 3) => "Bad message type",
        (1, _) => "Invalid message header",
        (2, 1) => "Unsupported version number",
        (2, 2) => "Bad peer AS",
        (2, 3) => "Bad BGP identifier",
        (2, 4) => "Unsupported optional parameter",
        (2, 6) => "Unacceptable hold time",
        (2, 7) => "Required capability missing",
        (2, _) => "Invalid OPEN message",
        (3, 1) => "Malformed attribute list",
        (3, 2) => "Unrecognized well-known attribute",
        (3, 3) => "Missing mandatory attribute",
        (3, 4) => "Invalid attribute flags",
        (3, 5) => "Invalid attribute length",
        (3, 6) => "Invalid ORIGIN attribute",
        (3, 8) => "Invalid NEXT_HOP attribute",
        (3, 9) => "Optional attribute error",
        (3, 10) => "Invalid network field",
        (3, 11) => "Malformed AS_PATH",
        (3, _) => "Invalid UPDATE message",
        (4, _) => "Hold timer expired",
        (5, 1) => "Unexpected message in OpenSent state",
        (5, 2) => "Unexpected message in OpenConfirm state",
        (5, 3) => "Unexpected message in Established state",
        (5, _) => "Finite state machine error",
        (6, 1) => "Maximum number of prefixes reached",
        (6, 2) => "Administrative shutdown",
        (6, 3) => "Peer de-configured",
        (6, 4) => "Administrative reset",
        (6, 5) => "Connection rejected",
        (6, 6) => "Configuration change",
        (6, 7) => "Connection collision resolution",
        (6, 8) => "Out of resources",
        (6, 9) => "Hard reset",
        (6, 10) => "BFD down",
        (6, _) => "Cease",
        (7, _) => "Invalid ROUTE-REFRESH message",
        (8, _) => "Send hold timer expired",
        _ => return format!("Error {code}/{sub}"),
    };
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_communication_round_trips() {
        let n = Notification::admin_shutdown(Some("maintenance, back at 10:00"));
        assert_eq!(n.code, 6);
        assert_eq!(n.subcode, 2);
        assert_eq!(n.data[0] as usize, "maintenance, back at 10:00".len());
        let back = Notification::decode(&n.body());
        assert_eq!(
            back.shutdown_message().as_deref(),
            Some("maintenance, back at 10:00")
        );
        assert_eq!(
            back.text(),
            "Administrative shutdown: \"maintenance, back at 10:00\""
        );
    }

    #[test]
    fn long_shutdown_text_is_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let n = Notification::admin_shutdown(Some(&long));
        assert!(n.data.len() <= 256);
        assert!(std::str::from_utf8(&n.data[1..]).is_ok());
    }

    #[test]
    fn texts_read_like_bird() {
        assert_eq!(
            Notification::hold_timer_expired().text(),
            "Hold timer expired"
        );
        assert_eq!(Notification::open(2, vec![]).text(), "Bad peer AS");
        assert_eq!(Notification::open(3, vec![]).text(), "Bad BGP identifier");
    }

    #[test]
    fn truncated_shutdown_length_is_ignored_not_panicking() {
        let n = Notification::new(6, 2, vec![200, b'a']);
        assert_eq!(n.shutdown_message(), None);
    }
}
