//! TCP sockets for BGP: connect and listen, with TCP MD5 signatures (RFC 2385,
//! `TCP_MD5SIG`, keyed per peer address on both the listening and the connecting socket)
//! and GTSM (RFC 5082: send with TTL 255, require TTL ≥ 256 − hops via `IP_MINTTL` /
//! `IPV6_MINHOPCOUNT`).
//!
//! The only `unsafe` in the crate is the `setsockopt` call in `setsockopt()`: tokio and the
//! standard library have no API for these options.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// `struct tcp_md5sig` from `<linux/tcp.h>`: a `sockaddr_storage` (128 octets, written by
/// hand below), flags, prefix length, key length, interface index, key (80 octets).
#[repr(C)]
struct TcpMd5Sig {
    addr: [u8; 128],
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; 80],
}

/// Writes `ip` as a `sockaddr_in` / `sockaddr_in6` (port 0) into `out`. `v6_socket` maps
/// an IPv4 address to `::ffff:a.b.c.d` for a dual-stack IPv6 socket.
fn write_sockaddr(out: &mut [u8; 128], ip: IpAddr, v6_socket: bool) {
    let ip = match (ip, v6_socket) {
        (IpAddr::V4(a), true) => IpAddr::V6(a.to_ipv6_mapped()),
        (ip, _) => ip,
    };
    match ip {
        IpAddr::V4(a) => {
            out[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out[8..24].copy_from_slice(&a.octets());
        }
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call;
    // `value` is a live, initialised `T` and we pass its exact size, so the kernel reads
    // only memory we own. No pointer is retained after the call returns.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Installs (or with `None` removes) the TCP MD5 key for `peer` on socket `fd`.
pub fn set_md5(fd: RawFd, v6_socket: bool, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let mut sig = TcpMd5Sig {
        addr: [0; 128],
        flags: 0,
        prefixlen: 0,
        keylen: 0,
        ifindex: 0,
        key: [0; 80],
    };
    write_sockaddr(&mut sig.addr, peer, v6_socket);
    if let Some(k) = key {
        if k.len() > sig.key.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TCP MD5 key longer than 80 octets",
            ));
        }
        sig.key[..k.len()].copy_from_slice(k);
        sig.keylen = k.len() as u16;
    }
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// GTSM (RFC 5082) on socket `fd`: outgoing TTL / hop limit 255, incoming at least
/// `256 - hops`.
pub fn set_gtsm(fd: RawFd, v6_socket: bool, hops: u8) -> io::Result<()> {
    let min: libc::c_int = 256 - hops.max(1) as libc::c_int;
    let ttl: libc::c_int = 255;
    if v6_socket {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)?;
        // A dual-stack socket may carry IPv4 too.
        let _ = setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl);
        let _ = setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min);
        Ok(())
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)
    }
}

/// How to reach a peer.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    /// Peer address and port.
    pub remote: SocketAddr,
    /// Source address to bind.
    pub local: Option<IpAddr>,
    /// MD5 password.
    pub password: Option<String>,
    /// GTSM hops.
    pub ttl_security: Option<u8>,
    /// Give up after this long.
    pub timeout: Duration,
}

/// Opens a connection to a peer with MD5 / GTSM applied before the SYN.
pub async fn connect(p: &ConnectParams) -> io::Result<TcpStream> {
    let v6 = p.remote.is_ipv6();
    let sock = if v6 {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    let fd = sock.as_raw_fd();
    if let Some(pw) = &p.password {
        set_md5(fd, v6, p.remote.ip(), Some(pw.as_bytes()))?;
    }
    if let Some(h) = p.ttl_security {
        set_gtsm(fd, v6, h)?;
    }
    if let Some(local) = p.local {
        sock.bind(SocketAddr::new(local, 0))?;
    }
    let stream = tokio::time::timeout(p.timeout, sock.connect(p.remote))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "Connection timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Binds the BGP listener.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

/// "Connection refused (os error 111)" → "Connection refused", as BIRD prints it.
pub fn error_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}
