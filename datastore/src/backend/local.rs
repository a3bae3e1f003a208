//! [`LocalStore`]: the embedded single-file backend, a SQLite database (WAL mode) that several
//! processes on one host share with etcd's semantics: store-wide revisions, create-if-absent,
//! compare-and-swap, watches from a revision over a bounded event log, and TTL leases.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction (SQLite's single writer lock, waited for
//! up to the busy timeout), which first sweeps expired leases: each expired lease deletes its
//! keys at a revision of its own, with Delete events. Reads sweep too when a deadline has
//! passed, so an expired key is never returned. Watches read the event log when woken: at
//! once for writes made through the same `LocalStore`, and within
//! [`LocalOptions::poll_interval`] for other processes' writes and for lease expiry (one
//! detector thread per store checks SQLite's change counter, the `detector` module).

mod clock;
mod detector;
mod ops;
mod schema;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::Notify;

use self::ops::KeyRange;
use crate::error::{Error, Result};
use crate::kv::{Guard, KeyValue, Lease, LeaseId, Listing, PrefixRead, Put, PutAll, Revision};
use crate::store::{Datastore, Watch};

/// Where the `local` datastore lives unless `CALICO_DATASTORE_PATH` says otherwise.
pub const DEFAULT_PATH: &str = "/var/lib/calico/datastore.db";

/// Maps a SQLite failure to the crate's error.
fn sql_err(e: rusqlite::Error) -> Error {
    Error::Backend(format!("sqlite: {e}"))
}

/// Tuning of a [`LocalStore`]; [`Default`] suits production and tests alike.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// How many revisions of events the log keeps; a watch starting further back gets
    /// [`Error::Compacted`]. Default 10 000.
    pub history: i64,
    /// How often the store looks for writes made by other processes (and for expired leases)
    /// while it has watches. Default 15 ms.
    pub poll_interval: Duration,
    /// How long a write waits for another process's write to finish before failing.
    /// Default 10 s.
    pub busy_timeout: Duration,
}

impl Default for LocalOptions {
    fn default() -> LocalOptions {
        LocalOptions {
            history: 10_000,
            poll_interval: Duration::from_millis(15),
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// The embedded datastore: owns two connections to the file (one for writes, one for reads;
/// each watch opens its own) and the wake-up signal for watches in this process. Cheap to
/// share behind an `Arc`; open it once per process.
pub struct LocalStore {
    inner: Arc<Inner>,
}

/// What the blocking calls share.
struct Inner {
    path: PathBuf,
    options: LocalOptions,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// Wakes this store's watches: notified after every commit made through the store, and
    /// by the [`detector`] when another process committed or a lease deadline passed.
    changed: Notify,
    /// Whether the [`detector`] runs (it starts with the first watch).
    detector: Mutex<bool>,
}

// ===== impl LocalStore =====

/// Creates the store's file readable and writable by its owner only (0600) when it does
/// not exist yet: it holds BGP configuration and every IPAM record. SQLite gives its WAL
/// and shared-memory files the same mode. An existing file keeps the mode it has.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Backend(format!("cannot create the file: {e}"))),
    }
}

impl LocalStore {
    /// Opens (creating it and its parent directories if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<LocalStore> {
        Self::open_with(path, LocalOptions::default())
    }

    /// Opens the store at `path` with explicit tuning.
    pub fn open_with(path: impl AsRef<Path>, options: LocalOptions) -> Result<LocalStore> {
        let path = path.as_ref().to_path_buf();
        let with_path = |e: Error| with_path(&path, e);
        if options.history < 1 {
            return Err(Error::Config(format!(
                "local datastore history must be at least 1 revision, got {}",
                options.history
            )));
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Backend(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        create_private(&path).map_err(with_path)?;
        let mut writer = schema::connect(&path, options.busy_timeout).map_err(with_path)?;
        schema::init(&mut writer).map_err(with_path)?;
        let reader = schema::connect(&path, options.busy_timeout).map_err(with_path)?;
        tracing::debug!(path = %path.display(), "local datastore open");
        Ok(LocalStore {
            inner: Arc::new(Inner {
                path,
                options,
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                changed: Notify::new(),
                detector: Mutex::new(false),
            }),
        })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Drops the event history before `revision` (as etcd's compact): watches starting
    /// earlier get [`Error::Compacted`]. A revision at or below the current compaction point
    /// does nothing; one past the store revision is an error.
    pub async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(move |c| {
            let current = ops::revision(c)?;
            if revision > current {
                return Err(Error::Backend(format!(
                    "cannot compact to revision {revision}: the store is at {current}"
                )));
            }
            ops::compact(c, revision)
        })
        .await
    }

    /// Runs `f` in one IMMEDIATE transaction on the writer connection, after sweeping expired
    /// leases. The sweep commits even when `f` refuses (conflict, not found, ...); an SQLite
    /// failure rolls everything back.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        self.blocking(move || {
            let out = inner.write_txn(f);
            inner.changed.notify_waiters();
            out
        })
        .await
    }

    /// Runs `f` in one read transaction on the reader connection (after a sweep if a lease
    /// deadline has passed, so reads never see an expired key).
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        self.blocking(move || {
            let due = {
                let conn = inner.reader()?;
                ops::lease_expiry_due(&conn, clock::now_ms()?)?
            };
            if due {
                inner.write_txn(|_| Ok(()))?;
                inner.changed.notify_waiters();
            }
            let mut conn = inner.reader()?;
            let tx = conn.transaction().map_err(sql_err)?;
            let out = f(&tx)?;
            tx.finish().map_err(sql_err)?;
            Ok(out)
        })
        .await
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Backend(format!("local datastore task failed: {e}")))?
            .map_err(|e| with_path(&path, e))
    }
}

/// Names the file in backend errors.
fn with_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Backend(msg) => Error::Backend(format!("local datastore {}: {msg}", path.display())),
        other => other,
    }
}

// ===== impl Inner =====

impl Inner {
    fn lock<'a>(&self, m: &'a Mutex<Connection>) -> MutexGuard<'a, Connection> {
        // A panic while holding the lock leaves no half-done transaction behind (rusqlite
        // rolls back on drop), so the connection is still good.
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reader(&self) -> Result<MutexGuard<'_, Connection>> {
        Ok(self.lock(&self.reader))
    }

    fn write_txn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.lock(&self.writer);
        write_on(&mut conn, self.options.history, f)
    }
}

/// One write transaction on `conn`: sweep, `f`, trim the history, commit (see
/// [`LocalStore::write`]).
fn write_on<T>(
    conn: &mut Connection,
    history: i64,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    ops::sweep_expired(&tx, clock::now_ms()?)?;
    let out = f(&tx);
    if let Err(Error::Backend(_)) = out {
        // Dropping `tx` rolls back.
        return out;
    }
    ops::trim_history(&tx, history)?;
    tx.commit().map_err(sql_err)?;
    out
}

/// Rounds a TTL up to whole seconds, at least one (etcd's granularity, so code written
/// against one backend behaves the same on the other).
fn lease_ttl(ttl: Duration) -> Duration {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[async_trait]
impl Datastore for LocalStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |c| ops::get(c, &key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        let range = KeyRange::prefix(prefix);
        self.read(move |c| {
            Ok(Listing {
                revision: ops::revision(c)?,
                items: ops::list(c, &range)?,
            })
        })
        .await
    }

    async fn list_at_once(&self, reads: &[PrefixRead<'_>]) -> Result<Vec<Listing>> {
        let reads: Vec<(KeyRange, bool)> = reads
            .iter()
            .map(|r| (KeyRange::prefix(r.prefix), r.keys_only))
            .collect();
        // One read of the connection: nothing is written between the listings.
        self.read(move |c| {
            let revision = ops::revision(c)?;
            reads
                .iter()
                .map(|(range, keys_only)| {
                    let mut items = ops::list(c, range)?;
                    if *keys_only {
                        items.iter_mut().for_each(|kv| kv.value.clear());
                    }
                    Ok(Listing { items, revision })
                })
                .collect()
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let key = key.to_string();
        self.write(move |c| ops::create(c, &key, &value, lease))
            .await
    }

    async fn put_all(&self, puts: Vec<Put>) -> Result<PutAll> {
        Put::check_distinct(&puts)?;
        self.write(move |c| ops::put_all(c, &puts)).await
    }

    async fn create_guarded(&self, key: &str, value: Vec<u8>, guard: &Guard) -> Result<Revision> {
        let (key, guard) = (key.to_string(), guard.clone());
        self.write(move |c| ops::create_guarded(c, &key, &value, &guard))
            .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        let key = key.to_string();
        self.write(move |c| ops::update(c, &key, &value, expected, lease))
            .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let key = key.to_string();
        self.write(move |c| ops::delete(c, &key, expected)).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch> {
        watch::start(self.inner.clone(), prefix, from).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        let ttl = lease_ttl(ttl);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let id = self
            .write(move |c| {
                let now = clock::now_ms()?;
                // Random positive ids, as etcd hands out; retry the rare collision.
                loop {
                    let id = (rand::random::<u64>() >> 1) as i64;
                    if id != 0 && ops::grant_lease(c, id, ttl_ms, now)? {
                        return Ok(id);
                    }
                }
            })
            .await?;
        Ok(Lease { id, ttl })
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.write(move |c| ops::keep_alive(c, lease, clock::now_ms()?))
            .await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.write(move |c| ops::revoke_lease(c, lease)).await
    }

    async fn lease_time_to_live(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let ms = self
            .read(move |c| ops::lease_remaining_ms(c, lease, clock::now_ms()?))
            .await?;
        Ok(Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }

    async fn revision(&self) -> Result<Revision> {
        self.read(ops::revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_follow_etcd() {
        let r = KeyRange::prefix("/a/");
        assert_eq!(r.start, b"/a/");
        assert_eq!(r.end.as_deref(), Some(&b"/a0"[..]));
        assert!(KeyRange::prefix("").end.is_none());
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(lease_ttl(Duration::from_millis(10)), Duration::from_secs(1));
        assert_eq!(
            lease_ttl(Duration::from_millis(1500)),
            Duration::from_secs(2)
        );
        assert_eq!(lease_ttl(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
