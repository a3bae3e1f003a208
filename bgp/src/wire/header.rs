//! Message framing (RFC 4271 §4.1, §6.1), done before zettabgp sees a byte: the marker, the
//! length field (19..=4096, zettabgp underflows below 19 and never checks the top) and the
//! per-type minimum / exact lengths.

use serde::{Deserialize, Serialize};

use super::notification::{Notification, code, subcode};

/// Octets in a message header: 16 marker, 2 length, 1 type.
pub const HEADER_LEN: usize = 19;
/// The largest message without RFC 8654 extended messages (not supported by zettabgp).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// The five message types this speaker knows (RFC 4271 §4.1, RFC 2918).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageType {
    /// 1
    Open = 1,
    /// 2
    Update = 2,
    /// 3
    Notification = 3,
    /// 4
    Keepalive = 4,
    /// 5
    RouteRefresh = 5,
}

impl MessageType {
    fn from_u8(t: u8) -> Option<MessageType> {
        Some(match t {
            1 => MessageType::Open,
            2 => MessageType::Update,
            3 => MessageType::Notification,
            4 => MessageType::Keepalive,
            5 => MessageType::RouteRefresh,
            _ => return None,
        })
    }
}

/// Looks at the front of `buf`. `Ok(None)`: fewer than 19 octets, or the header is valid but
/// the whole message has not arrived yet. `Ok(Some((type, len)))`: a complete message of
/// `len` octets (header included) is at the front. `Err`: the NOTIFICATION to send (RFC 4271
/// §6.1), decided as soon as the header is in, before the body arrives.
pub fn check_header(buf: &[u8]) -> Result<Option<(MessageType, usize)>, Notification> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if h[..16].iter().any(|&b| b != 0xff) {
        return Err(Notification::new(
            code::HEADER,
            subcode::header::NOT_SYNCHRONIZED,
            Vec::new(),
        ));
    }
    let len = u16::from_be_bytes([h[16], h[17]]) as usize;
    let bad_len = || {
        Notification::new(
            code::HEADER,
            subcode::header::BAD_LENGTH,
            (len as u16).to_be_bytes().to_vec(),
        )
    };
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(bad_len());
    }
    let Some(ty) = MessageType::from_u8(h[18]) else {
        return Err(Notification::new(
            code::HEADER,
            subcode::header::BAD_TYPE,
            vec![h[18]],
        ));
    };
    let ok = match ty {
        MessageType::Open => len >= 29,
        MessageType::Update => len >= 23,
        MessageType::Notification => len >= 21,
        MessageType::Keepalive => len == HEADER_LEN,
        MessageType::RouteRefresh => len >= 23,
    };
    if !ok {
        return Err(bad_len());
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some((ty, len)))
}

/// Writes a header for a body of `body_len` octets of type `ty` into `out`.
pub fn push_header(out: &mut Vec<u8>, ty: MessageType, body_len: usize) {
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&((HEADER_LEN + body_len) as u16).to_be_bytes());
    out.push(ty as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u16, ty: u8) -> Vec<u8> {
        let mut v = vec![0xff; 16];
        v.extend_from_slice(&len.to_be_bytes());
        v.push(ty);
        v
    }

    #[test]
    fn header_length_18_is_bad_message_length_with_the_length_as_data() {
        let n = check_header(&header(18, 4)).expect_err("must refuse");
        assert_eq!((n.code, n.subcode, n.data.clone()), (1, 2, vec![0, 18]));
    }

    #[test]
    fn header_length_above_4096_is_bad_message_length() {
        let n = check_header(&header(4097, 2)).expect_err("must refuse");
        assert_eq!((n.code, n.subcode), (1, 2));
    }

    #[test]
    fn keepalive_with_a_body_is_bad_message_length() {
        let n = check_header(&header(20, 4)).expect_err("must refuse");
        assert_eq!((n.code, n.subcode, n.data.clone()), (1, 2, vec![0, 20]));
    }

    #[test]
    fn short_open_is_bad_message_length() {
        let n = check_header(&header(28, 1)).expect_err("must refuse");
        assert_eq!((n.code, n.subcode), (1, 2));
    }

    #[test]
    fn unknown_type_is_bad_message_type_with_the_type_as_data() {
        let n = check_header(&header(19, 9)).expect_err("must refuse");
        assert_eq!((n.code, n.subcode, n.data.clone()), (1, 3, vec![9]));
    }

    #[test]
    fn broken_marker_is_connection_not_synchronized() {
        let mut h = header(19, 4);
        h[3] = 0;
        let n = check_header(&h).expect_err("must refuse");
        assert_eq!((n.code, n.subcode), (1, 1));
    }

    #[test]
    fn partial_message_waits_for_more_bytes() {
        assert_eq!(check_header(&header(30, 2)), Ok(None));
        assert_eq!(check_header(&[0xff; 10]), Ok(None));
        assert_eq!(
            check_header(&header(19, 4)),
            Ok(Some((MessageType::Keepalive, 19)))
        );
    }
}
