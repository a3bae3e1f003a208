//! Connection I/O tasks: one reader (frames and decodes, hands batches of messages to the
//! speaker task through a bounded channel, so a fast peer is slowed by TCP rather than by
//! our memory) and one writer (coalesces everything queued into one `write_all`) per TCP
//! connection; plus the outbound-connect and listener tasks. They only translate bytes to
//! typed events and back; every decision is the speaker task's.

use std::net::SocketAddr;
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

/// The speaker's handle on one open connection. Dropping it closes the connection after
/// what was queued has been written.
pub(crate) struct Conn {
    pub id: u64,
    pub local: SocketAddr,
    tx: mpsc::UnboundedSender<WriteCmd>,
    reader: AbortHandle,
    writer: Option<JoinHandle<()>>,
}

impl Conn {
    /// Starts the reader and writer tasks for `stream`.
    pub fn spawn(
        stream: TcpStream,
        peer: u16,
        id: u64,
        ctx: UpdateCtx,
        events: mpsc::Sender<ConnEvent>,
    ) -> std::io::Result<Conn> {
        let local = stream.local_addr()?;
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(rd, peer, id, ctx, events)).abort_handle();
        let writer = Some(tokio::spawn(write_loop(wr, rx)));
        Ok(Conn {
            id,
            local,
            tx,
            reader,
            writer,
        })
    }

    /// Queues bytes to send.
    pub fn send(&self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            let _ = self.tx.send(WriteCmd::Data(bytes));
        }
    }

    /// Stops reading, writes what is queued, then closes. Returns the writer task so a
    /// shutdown can wait for the last NOTIFICATION to leave.
    pub fn close(mut self) -> Option<JoinHandle<()>> {
        self.reader.abort();
        let _ = self.tx.send(WriteCmd::Close);
        self.writer.take()
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

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<WriteCmd>) {
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
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
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
