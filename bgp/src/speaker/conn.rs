//! Connection I/O tasks: one reader (frames and decodes, hands batches of messages to the
//! speaker task through a bounded channel, so a fast peer is slowed by TCP rather than by
//! our memory) and one writer (coalesces everything queued into one `write_all`) per TCP
//! connection; plus the outbound-connect and listener tasks. They only translate bytes to
//! typed events and back; every decision is the speaker task's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use super::socket::{self, ConnectParams};
use crate::wire::{Message, Notification, UpdateCtx, decode_stream};

/// Events from I/O tasks to the speaker task.
pub(crate) enum ConnEvent {
    /// The listener accepted a connection.
    Accepted {
        stream: TcpStream,
        remote: SocketAddr,
    },
    /// An outbound attempt succeeded.
    Connected {
        peer: u16,
        attempt: u64,
        stream: TcpStream,
    },
    /// An outbound attempt failed.
    ConnectFailed {
        peer: u16,
        attempt: u64,
        error: String,
    },
    /// Messages read from a connection (a decode error ends the batch and the reading).
    Messages {
        peer: u16,
        conn: u64,
        msgs: Vec<Result<Message, Notification>>,
    },
    /// The connection was closed by the peer or failed.
    Closed { peer: u16, conn: u64, error: String },
}

enum WriteCmd {
    Data(Vec<u8>),
    Close,
}

/// Bounds on what one connection may hold us to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendLimits {
    /// RFC 9687: a write making no progress for this long ends the connection.
    pub send_hold: Option<Duration>,
    /// Most bytes queued and not yet written.
    pub max_queue: usize,
}

/// The speaker's handle on one open connection. Dropping it closes the connection after
/// what was queued has been written.
pub(crate) struct Conn {
    pub id: u64,
    pub local: SocketAddr,
    tx: mpsc::UnboundedSender<WriteCmd>,
    reader: AbortHandle,
    writer: Option<JoinHandle<()>>,
    /// Bytes handed to the writer and not yet written.
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

impl Conn {
    /// Starts the reader and writer tasks for `stream`.
    pub fn spawn(
        stream: TcpStream,
        peer: u16,
        id: u64,
        ctx: UpdateCtx,
        events: mpsc::Sender<ConnEvent>,
        limits: SendLimits,
    ) -> std::io::Result<Conn> {
        let local = stream.local_addr()?;
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let reader = tokio::spawn(read_loop(rd, peer, id, ctx, events.clone())).abort_handle();
        let writer = Writer {
            peer,
            conn: id,
            events,
            queued: queued.clone(),
            send_hold: limits.send_hold,
        };
        let writer = Some(tokio::spawn(writer.run(wr, rx)));
        Ok(Conn {
            id,
            local,
            tx,
            reader,
            writer,
            queued,
            max_queue: limits.max_queue,
        })
    }

    /// Queues bytes to send. Refuses (false, nothing queued) when what already waits has
    /// reached the bound: the peer is not reading what it was sent, and the caller resets
    /// the session. A chunk is taken whole below the bound, however large (a whole table
    /// for a peer that reads), so the queue holds at most the bound plus one chunk.
    #[must_use]
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        if bytes.is_empty() {
            return true;
        }
        let len = bytes.len();
        let waiting = self.queued.load(Ordering::Relaxed);
        if waiting >= self.max_queue {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        let _ = self.tx.send(WriteCmd::Data(bytes));
        true
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Stops reading, writes what is queued, then closes. Returns the writer task so a
    /// shutdown can wait for the last NOTIFICATION to leave.
    pub fn close(mut self) -> Option<JoinHandle<()>> {
        self.reader.abort();
        let _ = self.tx.send(WriteCmd::Close);
        self.writer.take()
    }

    /// Ends the connection now, dropping whatever is queued (a peer that does not read).
    pub fn abort(mut self) {
        self.reader.abort();
        if let Some(w) = self.writer.take() {
            w.abort();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = self.tx.send(WriteCmd::Close);
    }
}

const READ_CHUNK: usize = 64 * 1024;

async fn read_loop(
    mut rd: OwnedReadHalf,
    peer: u16,
    conn: u64,
    ctx: UpdateCtx,
    events: mpsc::Sender<ConnEvent>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = match rd.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = events
                    .send(ConnEvent::Closed {
                        peer,
                        conn,
                        error: "Connection closed".into(),
                    })
                    .await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                let _ = events
                    .send(ConnEvent::Closed {
                        peer,
                        conn,
                        error: socket::error_text(&e),
                    })
                    .await;
                return;
            }
        };
        let _ = n;
        let mut msgs = Vec::new();
        let mut failed = false;
        let used = decode_stream(&buf, &ctx, |m| {
            failed |= m.is_err();
            msgs.push(m);
            true
        });
        buf.drain(..used.min(buf.len()));
        if !msgs.is_empty()
            && events
                .send(ConnEvent::Messages { peer, conn, msgs })
                .await
                .is_err()
        {
            return;
        }
        if failed {
            // The FSM sends the NOTIFICATION and closes; nothing more is read.
            return;
        }
    }
}

/// The writing half of a connection: coalesces what is queued into one write, counts it
/// off the queue as it leaves, and ends the connection when the peer stops reading for
/// the send hold time (RFC 9687).
struct Writer {
    peer: u16,
    conn: u64,
    events: mpsc::Sender<ConnEvent>,
    queued: Arc<AtomicUsize>,
    send_hold: Option<Duration>,
}

impl Writer {
    async fn run(self, mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<WriteCmd>) {
        let mut out: Vec<u8> = Vec::new();
        while let Some(cmd) = rx.recv().await {
            let mut close = false;
            match cmd {
                WriteCmd::Data(d) => out = d,
                WriteCmd::Close => close = true,
            }
            // Coalesce everything already queued into one write.
            while !close {
                match rx.try_recv() {
                    Ok(WriteCmd::Data(d)) => out.extend_from_slice(&d),
                    Ok(WriteCmd::Close) => close = true,
                    Err(_) => break,
                }
            }
            if let Err(error) = self.write_all(&mut wr, &out).await {
                let _ = self
                    .events
                    .send(ConnEvent::Closed {
                        peer: self.peer,
                        conn: self.conn,
                        error,
                    })
                    .await;
                return;
            }
            out = Vec::new();
            if close {
                let _ = wr.shutdown().await;
                return;
            }
        }
        let _ = wr.shutdown().await;
    }

    /// Writes `buf`, each partial write within the send hold time.
    async fn write_all(&self, wr: &mut OwnedWriteHalf, buf: &[u8]) -> Result<(), String> {
        let mut pos = 0;
        while pos < buf.len() {
            let write = wr.write(&buf[pos..]);
            let written = match self.send_hold {
                Some(hold) => tokio::time::timeout(hold, write).await.map_err(|_| {
                    format!(
                        "send hold timer expired: the peer read nothing for {} s (RFC 9687)",
                        hold.as_secs()
                    )
                })?,
                None => write.await,
            };
            let n = written.map_err(|e| socket::error_text(&e))?;
            if n == 0 {
                return Err("Connection closed".into());
            }
            pos += n;
            self.queued.fetch_sub(n, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Starts an outbound connection attempt; the result comes back as an event.
pub(crate) fn spawn_connect(
    peer: u16,
    attempt: u64,
    params: ConnectParams,
    events: mpsc::Sender<ConnEvent>,
) -> AbortHandle {
    tokio::spawn(async move {
        let ev = match socket::connect(&params).await {
            Ok(stream) => ConnEvent::Connected {
                peer,
                attempt,
                stream,
            },
            Err(e) => ConnEvent::ConnectFailed {
                peer,
                attempt,
                error: socket::error_text(&e),
            },
        };
        let _ = events.send(ev).await;
    })
    .abort_handle()
}

/// Accepts connections for ever, handing them to the speaker task.
pub(crate) fn spawn_listener(
    listener: std::sync::Arc<TcpListener>,
    events: mpsc::Sender<ConnEvent>,
) -> AbortHandle {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, remote)) => {
                    if events
                        .send(ConnEvent::Accepted { stream, remote })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .abort_handle()
}
