//! Watches on the local store: one task per watch that reads the event log through its own
//! connection whenever the store's change signal fires (see [`super::detector`]), sweeps
//! expired leases on the way (so TTL expiry shows up without other writes), and forwards
//! events in (revision, key) order.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::ops::{self, KeyRange};
use super::{Inner, clock, detector, schema, sql_err, with_path, write_on};
use crate::error::{Error, Result};
use crate::kv::{Revision, WatchEvent};
use crate::store::Watch;

/// Events buffered between the poller and the consumer.
const WATCH_BUFFER: usize = 1024;
/// Events read per poll.
const BATCH: usize = 512;
/// A watch also polls this often without a signal: a safety net, not the normal path.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

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
    detector::ensure_started(&inner).map_err(|e| with_path(&inner.path, e))?;
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let poller = Poller {
        inner,
        range,
        next,
        tx,
    };
    let cursor = Cursor {
        conn,
        data_version: None,
        next_expiry: None,
    };
    tokio::spawn(poller.run(cursor));
    Ok(Watch::new(rx))
}

/// The watch's own connection and what it knew at its last full poll, so an idle poll costs
/// one `PRAGMA data_version`.
struct Cursor {
    conn: Connection,
    /// `data_version` at the last full poll; `None` forces a full poll.
    data_version: Option<i64>,
    /// The earliest lease deadline seen at the last full poll.
    next_expiry: Option<i64>,
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
    async fn run(mut self, mut cursor: Cursor) {
        loop {
            // Registered before polling, so a change during the poll still wakes us.
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();

            let inner = self.inner.clone();
            let range = self.range.clone();
            let next = self.next;
            let joined = tokio::task::spawn_blocking(move || {
                let out = poll(&inner, &mut cursor, &range, next);
                (cursor, out)
            })
            .await;
            let events = match joined {
                Ok((c, Ok(events))) => {
                    cursor = c;
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
                cursor.data_version = None;
                continue;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep(FALLBACK_POLL) => {}
                _ = self.tx.closed() => return,
            }
        }
    }
}

/// One poll: nothing when no other connection committed and no lease deadline passed since
/// the last full poll; else sweep expired leases if due, then read the events from `next` on
/// in one snapshot, whole revisions only.
fn poll(
    inner: &Inner,
    cursor: &mut Cursor,
    range: &KeyRange,
    next: Revision,
) -> Result<Vec<WatchEvent>> {
    let now = clock::now_ms()?;
    // Read before the snapshot below: a commit in between is seen now and polled again.
    let version = ops::data_version(&cursor.conn)?;
    let expiry_due = cursor.next_expiry.is_some_and(|t| t <= now);
    if cursor.data_version == Some(version) && !expiry_due {
        return Ok(Vec::new());
    }
    let conn = &mut cursor.conn;
    if ops::lease_expiry_due(conn, now)? {
        write_on(conn, inner.options.history, |_| Ok(()))?;
        inner.changed.notify_waiters();
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
    let next_expiry = ops::next_lease_expiry(&tx)?;
    tx.finish().map_err(sql_err)?;
    cursor.data_version = Some(version);
    cursor.next_expiry = next_expiry;
    Ok(events)
}
