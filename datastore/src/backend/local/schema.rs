//! The SQLite file's tables and the settings every connection to it uses.
//!
//! - `meta(name, value)`: `revision` (the store revision, bumped once per write),
//!   `compact_rev` (the oldest revision a watch may start from), `boot_id`, `schema`.
//! - `kv(key, value, create_rev, mod_rev, lease)`: the live keys. Keys are BLOBs so prefix
//!   ranges compare bytes, as etcd does.
//! - `events(rev, key, kind, value, create_rev, lease)`: the change log watches read, trimmed
//!   to a bounded history.
//! - `leases(id, ttl_ms, expiry_ms)`: live leases; `expiry_ms` is on the boot-time clock
//!   ([`super::clock`]).

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::clock;
use super::sql_err;
use crate::error::{Error, Result};

/// Version of the layout below, stored in `meta.schema`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value ANY
) STRICT;
CREATE TABLE IF NOT EXISTS kv (
    key        BLOB PRIMARY KEY,
    value      BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev    INTEGER NOT NULL,
    lease      INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv(lease) WHERE lease IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    rev        INTEGER NOT NULL,
    key        BLOB NOT NULL,
    kind       INTEGER NOT NULL,
    value      BLOB,
    create_rev INTEGER,
    lease      INTEGER,
    PRIMARY KEY (rev, key)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id        INTEGER PRIMARY KEY,
    ttl_ms    INTEGER NOT NULL,
    expiry_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases(expiry_ms);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compact_rev', 0);
";

/// How many pages the WAL holds before the write that passes it copies them into the
/// database file (a checkpoint, two fsyncs). Small, because a process that opens the file
/// while no other has it open reads the whole WAL back first (about 1.2 us a page here);
/// large enough that the checkpoints' fsyncs are spread over many writes (a pod's ADD and
/// DEL write about 30 pages).
const WAL_CHECKPOINT_PAGES: u32 = 256;

/// Opens one connection to the store file with the settings every connection needs: WAL
/// (readers never block the writer), `synchronous=NORMAL` (a committed write survives any
/// process crash; a power loss may lose the last commits, never the file), a busy timeout
/// so concurrent writers from several processes queue instead of failing, and no
/// checkpoint when the last connection closes: a CNI plugin process would otherwise pay
/// three fsyncs on its way out, and the next one another for a new WAL's header;
/// checkpoints come every [`WAL_CHECKPOINT_PAGES`] instead.
pub(super) fn connect(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(sql_err)?;
    conn.busy_timeout(busy_timeout).map_err(sql_err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sql_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend(format!(
            "cannot switch {} to WAL mode (got {mode}); is it on a network filesystem?",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql_err)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
        .map_err(sql_err)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(sql_err)?;
    Ok(conn)
}

/// Creates the tables if missing, checks the layout version, and re-arms every lease when
/// the host rebooted since the store last ran (see [`super::clock`]).
pub(super) fn init(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    tx.execute_batch(SCHEMA).map_err(sql_err)?;
    let version: Option<i64> = tx
        .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql_err)?;
    match version {
        None => {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('schema', ?1)",
                [SCHEMA_VERSION],
            )
            .map_err(sql_err)?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(Error::Backend(format!(
                "datastore file has layout version {other}, this build knows {SCHEMA_VERSION}"
            )));
        }
    }
    let boot = clock::boot_id();
    let stored: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE name = 'boot_id'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql_err)?;
    if stored.as_deref() != Some(boot.as_str()) {
        let now = clock::now_ms()?;
        let rearmed = tx
            .execute("UPDATE leases SET expiry_ms = ?1 + ttl_ms", [now])
            .map_err(sql_err)?;
        if stored.is_some() && rearmed > 0 {
            tracing::info!(
                leases = rearmed,
                "host rebooted: leases re-armed for a full TTL"
            );
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('boot_id', ?1)",
            [&boot],
        )
        .map_err(sql_err)?;
    }
    tx.commit().map_err(sql_err)
}
