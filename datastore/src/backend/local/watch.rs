//! Watches on the local store: one task per watch that polls the event log through its own
//! connection, sweeps expired leases on the way (so TTL expiry shows up without other
//! writes), and forwards events in (revision, key) order.

use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::ops::{self, KeyRange};
use super::{Inner, clock, schema, sql_err, with_path, write_on};
use crate::error::{Error, Result};
use crate::kv::{Revision, WatchEvent};
use crate::store::Watch;

/// Events buffered between the poller and the consumer.
const WATCH_BUFFER: usize = 1024;
/// Events read per poll.
const BATCH: usize = 512;

/// Opens the watch's connection, resolves `from = 0` to "after the current revision" (so
/// every write committed after this returns is seen) and starts the poller.
pub(super) async fn start(inner: Arc<Inner>, prefix: &str, from: Revision) -> Result<Watch> {
    let range = KeyRange::prefix(prefix);
    let open = inner.clone();
    let (conn, next) = tokio::task::spawn_blocking(move || -> Result<(Connection, Revision)> {
        let conn = schema::connect(&open.path, open.options.busy_timeout)?;
        let next = if from > 0 {
            from
        } else {
            ops::revision(&conn)? + 1
        };
        Ok((conn, next))
    })
    .await
    .map_err(|e| Error::Backend(format!("local datastore task failed: {e}")))?
    .map_err(|e| with_path(&inner.path, e))?;
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let poller = Poller {
        inner,
        range,
        next,
        tx,
    };
    tokio::spawn(poller.run(conn));
    Ok(Watch::new(rx))
}

/// The task behind one watch.
struct Poller {
    inner: Arc<Inner>,
    range: KeyRange,
    /// The first revision not yet delivered.
    next: Revision,
    tx: mpsc::Sender<Result<WatchEvent>>,
}

impl Poller {
    async fn run(mut self, mut conn: Connection) {
        let poll_interval = self.inner.options.poll_interval;
        loop {
            // Registered before polling, so a commit during the poll still wakes us.
            let written = self.inner.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();

            let inner = self.inner.clone();
            let range = self.range.clone();
            let next = self.next;
            let joined = tokio::task::spawn_blocking(move || {
                let out = poll(&inner, &mut conn, &range, next);
                (conn, out)
            })
            .await;
            let events = match joined {
                Ok((c, Ok(events))) => {
                    conn = c;
                    events
                }
                Ok((_, Err(e))) => {
                    let _ = self.tx.send(Err(with_path(&self.inner.path, e))).await;
                    return;
                }
                Err(e) => {
                    let _ = self
                        .tx
                        .send(Err(Error::Backend(format!("local watch task failed: {e}"))))
                        .await;
                    return;
                }
            };
            let more = events.len() >= BATCH;
            for event in events {
                self.next = event.revision() + 1;
                if self.tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if more {
                continue;
            }
            tokio::select! {
                _ = &mut written => {}
                _ = tokio::time::sleep(poll_interval) => {}
                _ = self.tx.closed() => return,
            }
        }
    }
}

/// One poll: sweep expired leases if a deadline passed, then read the events from `next` on
/// in one snapshot, whole revisions only.
fn poll(
    inner: &Inner,
    conn: &mut Connection,
    range: &KeyRange,
    next: Revision,
) -> Result<Vec<WatchEvent>> {
    if ops::lease_expiry_due(conn, clock::now_ms()?)? {
        write_on(conn, inner.options.history, |_| Ok(()))?;
        inner.written.notify_waiters();
    }
    let tx = conn.transaction().map_err(sql_err)?;
    let oldest = ops::compact_revision(&tx)?;
    if next < oldest {
        return Err(Error::Compacted {
            requested: next,
            oldest,
        });
    }
    let mut events = ops::events(&tx, range, next, None, BATCH)?;
    if events.len() >= BATCH
        && let (Some(first), Some(last)) = (events.first(), events.last())
    {
        let (first, last) = (first.revision(), last.revision());
        if first == last {
            // One huge revision (a lease with many keys): deliver it whole.
            events = ops::events(&tx, range, last, Some(last), usize::MAX)?;
        } else {
            // Do not cut a revision in two: the rest of it comes with the next poll.
            events.retain(|e| e.revision() != last);
        }
    }
    tx.finish().map_err(sql_err)?;
    Ok(events)
}
