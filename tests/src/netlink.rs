//! Raw rtnetlink for the benchmarks' own probes (route monitors, the kernel's dump floor):
//! a route socket and a walk over the messages of one datagram, by header only, so what a
//! probe measures is the kernel and not a decoder.

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Result, anyhow};
use nix::sys::socket::{
    AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, socket,
};

/// The netlink header's length (`struct nlmsghdr`).
pub const HEADER_LEN: usize = 16;

/// A bound `NETLINK_ROUTE` socket of the calling thread's namespace, subscribed to the
/// multicast `groups` (0 for none); `configure` runs on it before the bind.
pub fn route_socket(
    groups: u32,
    configure: impl FnOnce(&OwnedFd) -> Result<()>,
) -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    configure(&fd)?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
    Ok(fd)
}

/// One message of a datagram: its type and its payload (after the header).
pub struct Message<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

/// The messages of one datagram in order; an `Err` (a header that does not fit or a length
/// below the header's) ends the walk.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<Message<'_>>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + HEADER_LEN > buf.len() {
            return None;
        }
        let header = &buf[at..at + HEADER_LEN];
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        if len < HEADER_LEN || at + len > buf.len() {
            at = buf.len();
            return Some(Err(anyhow!("a malformed netlink message")));
        }
        let payload = &buf[at + HEADER_LEN..at + len];
        at += len.next_multiple_of(4);
        Some(Ok(Message { kind, payload }))
    })
}
