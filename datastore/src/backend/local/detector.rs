//! The change detector: one thread per [`LocalStore`](super::LocalStore) with watches, which
//! every poll interval asks SQLite whether another connection committed (`PRAGMA
//! data_version`) or a lease deadline passed (then it sweeps), and wakes the store's watches
//! only then. Idle watches cost nothing; the thread ends when the store is dropped.

use std::sync::{Arc, Weak};

use rusqlite::Connection;

use super::{Inner, clock, ops, schema, write_on};
use crate::error::{Error, Result};

/// Starts the detector for `inner` unless it runs already (a failed start is retried by the
/// next watch). It then runs as long as the store.
pub(super) fn ensure_started(inner: &Arc<Inner>) -> Result<()> {
    let mut started = inner
        .detector
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*started {
        start(inner)?;
        *started = true;
    }
    Ok(())
}

fn start(inner: &Arc<Inner>) -> Result<()> {
    let conn = schema::connect(&inner.path, inner.options.busy_timeout)?;
    let weak = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name("datastore-watch".to_string())
        .spawn(move || run(weak, conn))
        .map(|_| ())
        .map_err(|e| Error::Backend(format!("cannot start the watch thread: {e}")))
}

/// What the detector knew at its last look.
#[derive(Default)]
struct Seen {
    data_version: Option<i64>,
    next_expiry: Option<i64>,
}

fn run(weak: Weak<Inner>, mut conn: Connection) {
    let mut seen = Seen::default();
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let interval = inner.options.poll_interval;
        match look(&inner, &mut conn, &mut seen) {
            Ok(false) => {}
            Ok(true) => inner.changed.notify_waiters(),
            Err(e) => {
                // Let the watches run into the error themselves.
                tracing::warn!(path = %inner.path.display(), "watch change detection: {e}");
                seen = Seen::default();
                inner.changed.notify_waiters();
            }
        }
        drop(inner);
        std::thread::sleep(interval);
    }
}

/// True when something may have changed since the last look.
fn look(inner: &Inner, conn: &mut Connection, seen: &mut Seen) -> Result<bool> {
    let now = clock::now_ms()?;
    let version = ops::data_version(conn)?;
    let expiry_due = seen.next_expiry.is_some_and(|t| t <= now);
    if seen.data_version == Some(version) && !expiry_due {
        return Ok(false);
    }
    if ops::lease_expiry_due(conn, now)? {
        write_on(conn, inner.options.history, |_| Ok(()))?;
    }
    seen.next_expiry = ops::next_lease_expiry(conn)?;
    seen.data_version = Some(version);
    Ok(true)
}
