//! The crate's one error type. Peer input never produces a panic or an `Error` that stops the
//! speaker: malformed messages become NOTIFICATIONs ([`crate::wire::Notification`]) on the
//! session that sent them. `Error` is for the embedding program: bad configuration, socket
//! setup, a speaker that has stopped.

use std::net::SocketAddr;

/// Everything the public API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {field}: {reason}")]
    Config {
        /// Which field (e.g. `router_id`, `peer 10.0.0.2 hold_time`).
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// `add_peer` for an address that already has a peer.
    #[error("peer {0} already exists")]
    PeerExists(SocketAddr),
    /// `update_peer` / `remove_peer` for an unknown address.
    #[error("no such peer {0}")]
    NoSuchPeer(SocketAddr),
    /// A socket operation failed (listen, bind, setsockopt).
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The speaker task has stopped (after `shutdown`, or it was dropped).
    #[error("the BGP speaker has stopped")]
    Stopped,
    /// A message could not be encoded (e.g. an attribute larger than a message).
    #[error("cannot encode BGP message: {0}")]
    Encode(String),
}

impl Error {
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
