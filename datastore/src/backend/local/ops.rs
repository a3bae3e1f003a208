//! Every store operation as SQL on one open transaction, with no async and no locking of its
//! own: [`super::LocalStore`] opens the transaction (IMMEDIATE for writes), calls one of these
//! and commits.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sql_err;
use crate::error::{Error, Result};
use crate::kv::{Guard, KeyValue, LeaseId, Put, PutAll, Revision, WatchEvent};

/// `events.kind` of a put.
const PUT: i64 = 0;
/// `events.kind` of a delete.
const DELETE: i64 = 1;

/// The byte range `[start, end)` holding every key with a given prefix (`end` is `None`
/// when the range runs to the last key, for the empty prefix or a prefix of `0xff` bytes).
#[derive(Debug, Clone)]
pub(super) struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// The range of `prefix`: etcd's `range_end` rule (increment the last byte below 0xff).
    pub fn prefix(prefix: &str) -> KeyRange {
        let start = prefix.as_bytes().to_vec();
        let mut end = start.clone();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return KeyRange {
                    start,
                    end: Some(end),
                };
            }
        }
        KeyRange { start, end: None }
    }
}

fn key_string(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::Decode {
        key: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        reason: "key is not UTF-8".to_string(),
    })
}

/// A `kv` row as selected: (key, value, create_rev, mod_rev, lease).
type KvRow = (Vec<u8>, Vec<u8>, i64, i64, Option<i64>);

/// Decodes a `kv` row.
fn kv_row(row: &Row<'_>) -> rusqlite::Result<KvRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn to_kv(row: KvRow) -> Result<KeyValue> {
    let (key, value, create_revision, mod_revision, lease) = row;
    Ok(KeyValue {
        key: key_string(key)?,
        value,
        create_revision,
        mod_revision,
        lease,
    })
}

// ===== meta =====

fn meta(c: &Connection, name: &str) -> Result<i64> {
    c.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .map_err(sql_err)
}

/// The store revision.
pub(super) fn revision(c: &Connection) -> Result<Revision> {
    meta(c, "revision")
}

/// The oldest revision a watch may start from.
pub(super) fn compact_revision(c: &Connection) -> Result<Revision> {
    meta(c, "compact_rev")
}

/// Bumps the store revision for a write and returns the new one.
fn next_revision(c: &Connection) -> Result<Revision> {
    c.query_row(
        "UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
        [],
        |r| r.get(0),
    )
    .map_err(sql_err)
}

// ===== reads =====

/// One key.
pub(super) fn get(c: &Connection, key: &str) -> Result<Option<KeyValue>> {
    c.query_row(
        "SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key = ?1",
        [key.as_bytes()],
        kv_row,
    )
    .optional()
    .map_err(sql_err)?
    .map(to_kv)
    .transpose()
}

/// Every key in `range`, sorted by key bytes.
pub(super) fn list(c: &Connection, range: &KeyRange) -> Result<Vec<KeyValue>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT key, value, create_rev, mod_rev, lease FROM kv
             WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) ORDER BY key",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![range.start, range.end], kv_row)
        .map_err(sql_err)?;
    rows.map(|r| to_kv(r.map_err(sql_err)?)).collect()
}

/// Up to `limit` events in `range` with `from <= revision <= to`, in (revision, key) order.
pub(super) fn events(
    c: &Connection,
    range: &KeyRange,
    from: Revision,
    to: Option<Revision>,
    limit: usize,
) -> Result<Vec<WatchEvent>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT rev, key, kind, value, create_rev, lease FROM events
             WHERE rev >= ?1 AND (?5 IS NULL OR rev <= ?5)
               AND key >= ?2 AND (?3 IS NULL OR key < ?3)
             ORDER BY rev, key LIMIT ?4",
        )
        .map_err(sql_err)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![from, range.start, range.end, limit, to], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<Vec<u8>>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .map_err(sql_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (rev, key, kind, value, create_rev, lease) = row.map_err(sql_err)?;
        let key = key_string(key)?;
        out.push(if kind == DELETE {
            WatchEvent::Delete { key, revision: rev }
        } else {
            WatchEvent::Put(KeyValue {
                key,
                value: value.unwrap_or_default(),
                create_revision: create_rev.unwrap_or(rev),
                mod_revision: rev,
                lease,
            })
        });
    }
    Ok(out)
}

/// True when some lease's deadline has passed and a sweep would delete something.
pub(super) fn lease_expiry_due(c: &Connection, now_ms: i64) -> Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM leases WHERE expiry_ms <= ?1)",
        [now_ms],
        |r| r.get(0),
    )
    .map_err(sql_err)
}

/// The earliest lease deadline, if any lease exists.
pub(super) fn next_lease_expiry(c: &Connection) -> Result<Option<i64>> {
    c.query_row("SELECT MIN(expiry_ms) FROM leases", [], |r| r.get(0))
        .map_err(sql_err)
}

/// Milliseconds a lease has left (`LeaseNotFound` if it is gone).
pub(super) fn lease_remaining_ms(c: &Connection, id: LeaseId, now_ms: i64) -> Result<i64> {
    let expiry: Option<i64> = c
        .query_row("SELECT expiry_ms FROM leases WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql_err)?;
    match expiry {
        Some(expiry) => Ok((expiry - now_ms).max(0)),
        None => Err(Error::LeaseNotFound(id)),
    }
}

/// SQLite's counter of commits made by *other* connections to the file: unchanged means
/// nothing new to read.
pub(super) fn data_version(c: &Connection) -> Result<i64> {
    c.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(sql_err)
}

// ===== writes (inside an IMMEDIATE transaction) =====

fn write_put(
    c: &Connection,
    rev: Revision,
    kv_create_rev: Revision,
    key: &str,
    value: &[u8],
    lease: Option<LeaseId>,
) -> Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev, lease)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![key.as_bytes(), value, kv_create_rev, rev, lease]))
    .map_err(sql_err)?;
    c.prepare_cached(
        "INSERT INTO events (rev, key, kind, value, create_rev, lease)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            rev,
            key.as_bytes(),
            PUT,
            value,
            kv_create_rev,
            lease
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

fn write_delete(c: &Connection, rev: Revision, key: &str) -> Result<()> {
    c.prepare_cached("DELETE FROM kv WHERE key = ?1")
        .and_then(|mut s| s.execute([key.as_bytes()]))
        .map_err(sql_err)?;
    c.prepare_cached(
        "INSERT INTO events (rev, key, kind, value, create_rev, lease)
         VALUES (?1, ?2, ?3, NULL, NULL, NULL)",
    )
    .and_then(|mut s| s.execute(params![rev, key.as_bytes(), DELETE]))
    .map_err(sql_err)?;
    Ok(())
}

fn check_lease(c: &Connection, lease: Option<LeaseId>) -> Result<()> {
    let Some(id) = lease else {
        return Ok(());
    };
    let exists: bool = c
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM leases WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    if exists {
        Ok(())
    } else {
        Err(Error::LeaseNotFound(id))
    }
}

/// Create-if-absent.
pub(super) fn create(
    c: &Connection,
    key: &str,
    value: &[u8],
    lease: Option<LeaseId>,
) -> Result<Revision> {
    if get(c, key)?.is_some() {
        return Err(Error::AlreadyExists {
            key: key.to_string(),
        });
    }
    check_lease(c, lease)?;
    let rev = next_revision(c)?;
    write_put(c, rev, rev, key, value, lease)?;
    Ok(rev)
}

/// Every put at one revision, only if every key is as expected; otherwise each key as it
/// is, and nothing written.
pub(super) fn put_all(c: &Connection, puts: &[Put]) -> Result<PutAll> {
    let mut current = Vec::with_capacity(puts.len());
    for put in puts {
        current.push(get(c, &put.key)?);
    }
    if !Put::all_as_expected(puts, &current) {
        return Ok(PutAll::Refused(current));
    }
    let mut writes: Vec<(&Put, Revision)> = puts
        .iter()
        .zip(&current)
        .map(|(p, kv)| (p, kv.as_ref().map_or(0, |kv| kv.create_revision)))
        .collect();
    writes.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    let rev = next_revision(c)?;
    for (put, create_rev) in writes {
        let create_rev = if create_rev == 0 { rev } else { create_rev };
        write_put(c, rev, create_rev, &put.key, &put.value, None)?;
    }
    Ok(PutAll::Written(rev))
}

/// [`create`] while `guard` holds (checked first: a failed guard is the answer even when
/// the key exists).
pub(super) fn create_guarded(
    c: &Connection,
    key: &str,
    value: &[u8],
    guard: &Guard,
) -> Result<Revision> {
    let now = get(c, &guard.key)?.map_or(0, |g| g.create_revision);
    if now != guard.create_revision {
        return Err(guard.failed(now));
    }
    create(c, key, value, None)
}

/// Compare-and-swap on the key's mod revision.
pub(super) fn update(
    c: &Connection,
    key: &str,
    value: &[u8],
    expected: Revision,
    lease: Option<LeaseId>,
) -> Result<Revision> {
    let current = get(c, key)?.ok_or_else(|| Error::NotFound {
        key: key.to_string(),
    })?;
    if current.mod_revision != expected {
        return Err(Error::Conflict {
            key: key.to_string(),
            expected,
            actual: current.mod_revision,
        });
    }
    check_lease(c, lease)?;
    let rev = next_revision(c)?;
    write_put(c, rev, current.create_revision, key, value, lease)?;
    Ok(rev)
}

/// Delete, optionally compare-and-swap; returns the key-value as it was.
pub(super) fn delete(c: &Connection, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
    let current = get(c, key)?.ok_or_else(|| Error::NotFound {
        key: key.to_string(),
    })?;
    if let Some(expected) = expected
        && current.mod_revision != expected
    {
        return Err(Error::Conflict {
            key: key.to_string(),
            expected,
            actual: current.mod_revision,
        });
    }
    let rev = next_revision(c)?;
    write_delete(c, rev, key)?;
    Ok(current)
}

/// Records a new lease; `id` must be unused (the caller draws it at random).
pub(super) fn grant_lease(c: &Connection, id: LeaseId, ttl_ms: i64, now_ms: i64) -> Result<bool> {
    let inserted = c
        .execute(
            "INSERT OR IGNORE INTO leases (id, ttl_ms, expiry_ms) VALUES (?1, ?2, ?3)",
            params![id, ttl_ms, now_ms + ttl_ms],
        )
        .map_err(sql_err)?;
    Ok(inserted == 1)
}

/// Pushes a live lease's deadline a full TTL from now.
pub(super) fn keep_alive(c: &Connection, id: LeaseId, now_ms: i64) -> Result<()> {
    let renewed = c
        .execute(
            "UPDATE leases SET expiry_ms = ?2 + ttl_ms WHERE id = ?1",
            params![id, now_ms],
        )
        .map_err(sql_err)?;
    if renewed == 1 {
        Ok(())
    } else {
        Err(Error::LeaseNotFound(id))
    }
}

/// Deletes a lease and its keys: one revision for all of them (as etcd), none when the lease
/// had no keys.
pub(super) fn revoke_lease(c: &Connection, id: LeaseId) -> Result<()> {
    let removed = c
        .execute("DELETE FROM leases WHERE id = ?1", [id])
        .map_err(sql_err)?;
    if removed == 0 {
        return Err(Error::LeaseNotFound(id));
    }
    let keys: Vec<Vec<u8>> = {
        let mut stmt = c
            .prepare_cached("SELECT key FROM kv WHERE lease = ?1 ORDER BY key")
            .map_err(sql_err)?;
        stmt.query_map([id], |r| r.get(0))
            .map_err(sql_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql_err)?
    };
    if keys.is_empty() {
        return Ok(());
    }
    let rev = next_revision(c)?;
    for key in keys {
        write_delete(c, rev, &key_string(key)?)?;
    }
    Ok(())
}

/// Revokes every lease whose deadline has passed; returns how many.
pub(super) fn sweep_expired(c: &Connection, now_ms: i64) -> Result<usize> {
    let expired: Vec<LeaseId> = {
        let mut stmt = c
            .prepare_cached("SELECT id FROM leases WHERE expiry_ms <= ?1 ORDER BY expiry_ms, id")
            .map_err(sql_err)?;
        stmt.query_map([now_ms], |r| r.get(0))
            .map_err(sql_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql_err)?
    };
    for id in &expired {
        tracing::debug!(lease = id, "lease expired");
        revoke_lease(c, *id)?;
    }
    Ok(expired.len())
}

/// Drops events older than `rev`: watches from before it get `Error::Compacted`. A `rev` at
/// or below the current compaction point does nothing.
pub(super) fn compact(c: &Connection, rev: Revision) -> Result<()> {
    if rev <= compact_revision(c)? {
        return Ok(());
    }
    c.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'compact_rev'",
        [rev],
    )
    .map_err(sql_err)?;
    c.prepare_cached("DELETE FROM events WHERE rev < ?1")
        .and_then(|mut s| s.execute([rev]))
        .map_err(sql_err)?;
    Ok(())
}

/// Keeps the event log to the last `history` revisions.
pub(super) fn trim_history(c: &Connection, history: i64) -> Result<()> {
    let oldest = revision(c)? - history + 1;
    if oldest > 1 {
        compact(c, oldest)?;
    }
    Ok(())
}
