//! A TCP proxy inside a lab namespace that can delay one request past its client's
//! timeout and deliver it afterwards: the ambiguous outcome of a write whose answer never
//! came (the kernel retransmitting a dead process's segments once a cut link is back, a
//! proposal committed by etcd's next leader). Armed with a byte pattern, it holds the
//! first client-to-server chunk that contains it (or every one, on every connection), and
//! everything after it on that connection; [`StallProxy::deliver_held`] then sends the
//! held chunks alone, waits for the server to act on them, and closes their connections.
//! Other connections pass untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use nix::sched::{CloneFlags, setns};

use crate::netns::Netns;

/// What the proxy shares with its pump threads.
#[derive(Default)]
struct Shared {
    /// The pattern to hold on, while armed, and whether to stay armed after a match.
    armed: Mutex<Option<(Vec<u8>, bool)>>,
    /// The held chunks with their connections' upstreams, in the order they matched.
    held: Mutex<Vec<(Vec<u8>, TcpStream)>>,
    held_cv: Condvar,
    stop: AtomicBool,
}

/// The proxy; stops (and closes every connection it made) on drop.
pub struct StallProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl StallProxy {
    /// Listens on a free port of 127.0.0.1 inside `ns`, forwarding to `upstream` (as
    /// reached from inside `ns`).
    pub fn start_in(ns: &Netns, upstream: SocketAddr) -> Result<StallProxy> {
        let ns_file = std::fs::File::open(ns.path()).context("opening the namespace")?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let accept_shared = shared.clone();
        thread::Builder::new()
            .name("stall-proxy".into())
            .spawn(move || {
                // Sockets belong to the namespace of the thread that makes them: listener
                // and upstream connections are made here, the pumps only move bytes.
                let listener = setns(&ns_file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| anyhow!("setns: {e}"))
                    .and_then(|()| Ok(TcpListener::bind("127.0.0.1:0")?));
                let listener = match listener {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = listener.set_nonblocking(true);
                let _ = tx.send(listener.local_addr().map_err(anyhow::Error::from));
                accept_loop(&listener, upstream, &accept_shared);
            })?;
        let addr = rx.recv().context("the proxy thread died")??;
        Ok(StallProxy { addr, shared })
    }

    /// `http://<addr>`, for an etcd endpoint list.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds the next client-to-server chunk that contains `pattern`.
    pub fn hold_next(&self, pattern: &[u8]) {
        *lock(&self.shared.armed) = Some((pattern.to_vec(), false));
    }

    /// Holds every client-to-server chunk that contains `pattern`, until
    /// [`deliver_held`](Self::deliver_held).
    pub fn hold_every(&self, pattern: &[u8]) {
        *lock(&self.shared.armed) = Some((pattern.to_vec(), true));
    }

    /// How many chunks are held, after waiting up to `within` for the first.
    pub fn wait_held(&self, within: Duration) -> usize {
        let held = lock(&self.shared.held);
        let (held, _) = self
            .shared
            .held_cv
            .wait_timeout_while(held, within, |h| h.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        held.len()
    }

    /// Disarms, sends each held chunk (alone) to the server, gives it `settle` to act, and
    /// closes those connections. Returns how many were delivered.
    pub fn deliver_held(&self, settle: Duration) -> Result<usize> {
        *lock(&self.shared.armed) = None;
        let held = std::mem::take(&mut *lock(&self.shared.held));
        for (chunk, mut upstream) in held.iter().map(|(c, u)| (c, u)) {
            upstream
                .write_all(chunk)
                .context("delivering a held request")?;
        }
        thread::sleep(settle);
        for (_, upstream) in &held {
            let _ = upstream.shutdown(Shutdown::Both);
        }
        Ok(held.len())
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (_, upstream) in lock(&self.shared.held).drain(..) {
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => return,
        };
        let Ok(server) = TcpStream::connect(upstream) else {
            continue;
        };
        let _ = client.set_nonblocking(false);
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let up = shared.clone();
        let _ = thread::Builder::new()
            .name("stall-up".into())
            .spawn(move || pump_up(client, server, &up));
        let down = shared.clone();
        let _ = thread::Builder::new()
            .name("stall-down".into())
            .spawn(move || pump_down(s2, c2, &down));
    }
}

/// Client to server, holding on the armed pattern.
fn pump_up(mut client: TcpStream, mut server: TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 64 * 1024];
    let mut holding = false;
    while !shared.stop.load(Ordering::SeqCst) {
        let n = match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break,
        };
        if holding {
            // Everything after the held request waits with it, and never goes.
            continue;
        }
        let chunk = &buf[..n];
        let matched = {
            let mut armed = lock(&shared.armed);
            let (hit, keep) = armed.as_ref().map_or((false, false), |(p, keep)| {
                (chunk.windows(p.len()).any(|w| w == p.as_slice()), *keep)
            });
            if hit && !keep {
                *armed = None;
            }
            hit
        };
        if matched {
            if let Ok(upstream) = server.try_clone() {
                lock(&shared.held).push((chunk.to_vec(), upstream));
                shared.held_cv.notify_all();
            }
            holding = true;
            continue;
        }
        if server.write_all(chunk).is_err() {
            break;
        }
    }
    if !holding {
        let _ = server.shutdown(Shutdown::Write);
    }
}

/// Server to client, untouched.
fn pump_down(mut server: TcpStream, mut client: TcpStream, shared: &Shared) {
    let _ = server.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stop.load(Ordering::SeqCst) {
        match server.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break,
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
