//! The wire layer: framing, OPEN, UPDATE (with RFC 7606), NOTIFICATION, KEEPALIVE and
//! ROUTE-REFRESH. zettabgp 0.6 decodes attribute values and encodes OPEN and attributes; we
//! own everything that has to be robust against a hostile peer (see `header`, `update`).
//! Nothing here does I/O.

pub mod attrs;
pub mod encode;
pub mod header;
pub mod notification;
pub mod open;
pub mod update;

use serde::{Deserialize, Serialize};

pub use self::attrs::{LargeCommunity, Origin, PathAttrs, RawAttr};
pub use self::header::{HEADER_LEN, MAX_MESSAGE_LEN, MessageType, check_header};
pub use self::notification::Notification;
pub use self::open::{
    Capabilities, GracefulRestartCap, Open, OpenParams, decode_open, encode_open,
};
pub use self::update::{AttrAction, AttrError, Update, UpdateCtx, decode_update};
use crate::prefix::Afi;

/// A decoded message, as the session FSM consumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE (boxed: much larger than the others).
    Update(Box<Update>),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH for a family (`None`: a family we do not carry).
    RouteRefresh {
        /// The family asked for.
        #[serde(default)]
        afi: Option<Afi>,
    },
}

/// Decodes one framed message body (`check_header` already accepted the header).
pub fn decode_message(
    ty: MessageType,
    body: &[u8],
    ctx: &UpdateCtx,
) -> Result<Message, Notification> {
    Ok(match ty {
        MessageType::Open => Message::Open(decode_open(body)?),
        MessageType::Update => Message::Update(Box::new(decode_update(body, ctx)?)),
        MessageType::Notification => Message::Notification(Notification::decode(body)),
        MessageType::Keepalive => Message::Keepalive,
        MessageType::RouteRefresh => {
            let afi = match body {
                [a0, a1, _, safi, ..] => Afi::from_codes(u16::from_be_bytes([*a0, *a1]), *safi),
                _ => None,
            };
            Message::RouteRefresh { afi }
        }
    })
}

/// Splits complete messages off the front of `buf` and decodes them; returns the number of
/// octets consumed. Stops at the first framing error (the connection is then torn down with
/// that NOTIFICATION).
pub fn decode_stream(
    buf: &[u8],
    ctx: &UpdateCtx,
    mut each: impl FnMut(Result<Message, Notification>) -> bool,
) -> usize {
    let mut pos = 0;
    loop {
        match check_header(&buf[pos..]) {
            Ok(None) => return pos,
            Ok(Some((ty, len))) => {
                let body = &buf[pos + HEADER_LEN..pos + len];
                pos += len;
                let r = decode_message(ty, body, ctx);
                let stop = r.is_err();
                if !each(r) || stop {
                    return pos;
                }
            }
            Err(n) => {
                each(Err(n));
                return buf.len();
            }
        }
    }
}
