//! The datastore conformance suite: one set of test functions, run against both backends by
//! the `conformance!` macro (`local::*` on a SQLite file in a temporary directory, `etcd::*`
//! on a real etcd the test starts itself, or the one named by `ETCD_ENDPOINTS_FOR_TESTS`).
//! Backend-specific cases (two OS processes on one local file, etcd TLS, etcd going away)
//! follow in `local_only` and `etcd_only`.
//!
//! Run: `cargo test -p datastore --test conformance` (needs `etcd` on PATH, Debian package
//! `etcd-server`). No test asserts a duration: deadlines only bound a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::backend::{EtcdOptions, EtcdStore, LocalOptions, LocalStore};
use datastore::{
    Datastore, Error, Expect, Guard, KeyValue, PrefixRead, Put, PutAll, Revision, Watch, WatchEvent,
};
use lab::etcd::TestEtcd;
use tempfile::TempDir;

/// Bounds every wait for an event: only a failing test ever reaches it.
const DEADLINE: Duration = Duration::from_secs(30);

// ===== fixtures =====

/// A backend under test: the store, what keeps it alive, and a key prefix no other test uses
/// (tests may share an external etcd).
struct Fixture {
    backend: Backend,
    store: Arc<dyn Datastore>,
    prefix: String,
}

enum Backend {
    Local {
        store: Arc<LocalStore>,
        _dir: TempDir,
    },
    Etcd {
        store: Arc<EtcdStore>,
        etcd: TestEtcd,
    },
}

impl Fixture {
    async fn local(test: &str) -> Fixture {
        Self::local_with(test, LocalOptions::default()).await
    }

    async fn local_with(test: &str, options: LocalOptions) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        // A parent that does not exist yet: opening creates it.
        let path = dir.path().join("var/lib/calico/datastore.db");
        let store = Arc::new(LocalStore::open_with(&path, options).expect("open local store"));
        Fixture {
            store: store.clone(),
            backend: Backend::Local { store, _dir: dir },
            prefix: unique_prefix(test),
        }
    }

    async fn etcd(test: &str) -> Fixture {
        let etcd = tokio::task::spawn_blocking(TestEtcd::from_env_or_start)
            .await
            .expect("join")
            .expect("etcd for tests (is etcd-server installed?)");
        Self::etcd_on(test, etcd).await
    }

    /// A private etcd even when `ETCD_ENDPOINTS_FOR_TESTS` is set: for cases that change the
    /// whole store (compaction).
    async fn etcd_private(test: &str) -> Fixture {
        let server = tokio::task::spawn_blocking(lab::EtcdServer::start_local)
            .await
            .expect("join")
            .expect("start etcd (is etcd-server installed?)");
        Self::etcd_on(test, TestEtcd::Local(server)).await
    }

    async fn etcd_on(test: &str, etcd: TestEtcd) -> Fixture {
        let store = Arc::new(
            EtcdStore::connect(EtcdOptions::new(etcd.endpoints()))
                .await
                .expect("connect to etcd"),
        );
        Fixture {
            store: store.clone(),
            backend: Backend::Etcd { store, etcd },
            prefix: unique_prefix(test),
        }
    }

    /// `<prefix><name>`.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Another client of the same store: a second `LocalStore` on the file, or a second etcd
    /// connection.
    async fn second_client(&self) -> Arc<dyn Datastore> {
        match &self.backend {
            Backend::Local { store, .. } => {
                Arc::new(LocalStore::open(store.path()).expect("second local store"))
            }
            Backend::Etcd { etcd, .. } => Arc::new(
                EtcdStore::connect(EtcdOptions::new(etcd.endpoints()))
                    .await
                    .expect("second etcd client"),
            ),
        }
    }

    /// Compacts the store's history before `revision`.
    async fn compact(&self, revision: Revision) {
        match &self.backend {
            Backend::Local { store, .. } => store.compact(revision).await,
            Backend::Etcd { store, .. } => store.compact(revision).await,
        }
        .expect("compact");
    }
}

fn unique_prefix(test: &str) -> String {
    format!("/conformance/{test}/{:016x}/", rand::random::<u64>())
}

/// Declares `local::<test>` and `etcd::<test>` for each shared test function. Tests listed
/// under `store_wide` change the whole store (compaction), so on etcd they always get a
/// private server, even when `ETCD_ENDPOINTS_FOR_TESTS` names a shared one.
macro_rules! conformance {
    (keyed: [$($test:ident),* $(,)?], store_wide: [$($wide:ident),* $(,)?] $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::Fixture::local(stringify!($test)).await).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $wide() {
                    super::$wide(super::Fixture::local(stringify!($wide)).await).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::Fixture::etcd(stringify!($test)).await).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $wide() {
                    super::$wide(super::Fixture::etcd_private(stringify!($wide)).await).await;
                }
            )*
        }
    };
}

conformance!(
    keyed: [
        get_create_update_delete_follow_revisions,
        list_is_sorted_and_bounded_by_prefix,
        list_at_once_reads_each_prefix_at_one_revision,
        cas_conflict_names_both_revisions,
        a_guarded_create_writes_only_while_its_guard_is_as_read,
        create_all_writes_every_key_at_one_revision_or_none,
        put_all_writes_every_key_as_expected_or_none,
        lease_of_unknown_id_is_refused,
        create_race_has_exactly_one_winner,
        concurrent_cas_increments_reach_the_exact_count,
        watch_delivers_in_order_and_resumes_without_gap_or_duplicate,
        watch_from_zero_starts_after_the_current_revision,
        watch_sees_writes_of_another_client,
        ttl_expiry_deletes_the_key_with_a_delete_event,
        keep_alive_keeps_a_key_past_its_ttl,
        revoke_deletes_every_key_of_the_lease_at_one_revision,
        update_replaces_the_lease,
        lease_time_to_live_counts_down_and_ends_with_the_lease,
    ],
    store_wide: [watch_from_before_compaction_is_refused],
);

// ===== helpers =====

fn text(kv: &KeyValue) -> String {
    String::from_utf8_lossy(&kv.value).into_owned()
}

/// The next event, failing the test on an error, a closed stream or the deadline.
async fn next_event(watch: &mut Watch) -> WatchEvent {
    match tokio::time::timeout(DEADLINE, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch closed"),
        Err(_) => panic!("no watch event within {DEADLINE:?}"),
    }
}

/// The next `n` events.
async fn next_events(watch: &mut Watch, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_event(watch).await);
    }
    out
}

/// The next `n` events of `watch`, each a put: its key and revision.
async fn next_puts(watch: &mut Watch, n: usize) -> Vec<(String, Revision)> {
    next_events(watch, n)
        .await
        .iter()
        .map(|e| match e {
            WatchEvent::Put(kv) => (kv.key.clone(), kv.mod_revision),
            other => panic!("not a put: {other:?}"),
        })
        .collect()
}

/// True when nothing arrives on `watch` before a write made afterwards to `marker` does:
/// proves the absence of an event without waiting for a fixed time.
async fn nothing_before_marker(store: &dyn Datastore, watch: &mut Watch, marker: &str) -> bool {
    store
        .create(marker, b"marker".to_vec(), None)
        .await
        .expect("write marker");
    next_event(watch).await.key() == marker
}

/// Reads the counter at `key`, adds one with compare-and-swap, retrying on conflict; returns
/// (attempts that conflicted, the value written).
async fn cas_increment(store: &dyn Datastore, key: &str) -> (u32, u64) {
    let mut conflicts = 0;
    loop {
        let kv = store.get(key).await.expect("get counter").expect("counter");
        let n: u64 = text(&kv).parse().expect("counter value");
        match store
            .update(key, (n + 1).to_string().into_bytes(), kv.mod_revision, None)
            .await
        {
            Ok(_) => return (conflicts, n + 1),
            Err(Error::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("update counter: {e}"),
        }
    }
}

/// Waits (bounded) until `check` holds, polling.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ===== shared tests =====

async fn get_create_update_delete_follow_revisions(f: Fixture) {
    let s = f.store.as_ref();
    let a = f.key("a");
    assert_eq!(s.get(&a).await.expect("get"), None);

    let r1 = s.create(&a, b"1".to_vec(), None).await.expect("create");
    let kv = s.get(&a).await.expect("get").expect("created key");
    assert_eq!(
        (
            text(&kv).as_str(),
            kv.create_revision,
            kv.mod_revision,
            kv.lease
        ),
        ("1", r1, r1, None)
    );
    assert!(s.revision().await.expect("revision") >= r1);
    match s.create(&a, b"again".to_vec(), None).await {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, a),
        other => panic!("second create: {other:?}"),
    }

    let r2 = s.update(&a, b"2".to_vec(), r1, None).await.expect("update");
    assert!(r2 > r1, "revisions increase: {r2} > {r1}");
    let kv = s.get(&a).await.expect("get").expect("key");
    assert_eq!(
        (text(&kv).as_str(), kv.create_revision, kv.mod_revision),
        ("2", r1, r2)
    );

    match s.update(&f.key("missing"), b"x".to_vec(), r2, None).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("update of a missing key: {other:?}"),
    }
    match s.delete(&a, Some(r1)).await {
        Err(Error::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (r1, r2)),
        other => panic!("delete with a stale revision: {other:?}"),
    }
    let deleted = s.delete(&a, Some(r2)).await.expect("delete");
    assert_eq!((text(&deleted).as_str(), deleted.mod_revision), ("2", r2));
    assert_eq!(s.get(&a).await.expect("get"), None);
    match s.delete(&a, None).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("delete of a missing key: {other:?}"),
    }

    // A new incarnation gets a new create revision.
    let r3 = s.create(&a, b"3".to_vec(), None).await.expect("re-create");
    assert!(r3 > r2);
    let kv = s.get(&a).await.expect("get").expect("key");
    assert_eq!((kv.create_revision, kv.mod_revision), (r3, r3));
    s.delete(&a, None).await.expect("delete without CAS");
    assert_eq!(s.get(&a).await.expect("get"), None);
}

async fn list_is_sorted_and_bounded_by_prefix(f: Fixture) {
    let s = f.store.as_ref();
    for name in ["p/b", "p/a", "p/ba", "pa", "p", "q/a"] {
        s.create(&f.key(name), name.as_bytes().to_vec(), None)
            .await
            .expect("create");
    }
    let before = s.revision().await.expect("revision");
    let listing = s.list(&f.key("p/")).await.expect("list");
    let keys: Vec<&str> = listing.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, [f.key("p/a"), f.key("p/b"), f.key("p/ba")]);
    assert!(listing.revision >= before);
    let all = s.list(&f.prefix).await.expect("list all");
    assert_eq!(all.items.len(), 6);
    assert!(all.items.windows(2).all(|w| w[0].key < w[1].key));
    assert!(
        s.list(&f.key("nothing/"))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

async fn list_at_once_reads_each_prefix_at_one_revision(f: Fixture) {
    let s = f.store.as_ref();
    for name in ["a/1", "a/2", "b/1", "c/1"] {
        s.create(&f.key(name), name.as_bytes().to_vec(), None)
            .await
            .expect("create");
    }
    let (a, b, none) = (f.key("a/"), f.key("b/"), f.key("none/"));
    let reads = [
        PrefixRead {
            prefix: &a,
            keys_only: true,
        },
        PrefixRead {
            prefix: &b,
            keys_only: false,
        },
        PrefixRead {
            prefix: &none,
            keys_only: false,
        },
    ];
    let listings = s.list_at_once(&reads).await.expect("list at once");
    assert_eq!(listings.len(), 3);
    let keys: Vec<&str> = listings[0].items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, [f.key("a/1"), f.key("a/2")]);
    assert!(listings[0].items.iter().all(|kv| kv.value.is_empty()));
    assert!(listings[0].items.iter().all(|kv| kv.mod_revision > 0));
    assert_eq!(listings[1].items.len(), 1);
    assert_eq!(text(&listings[1].items[0]), "b/1");
    assert!(listings[2].items.is_empty());
    // One revision for all, no older than the writes above (a shared etcd may be ahead).
    let written = s
        .get(&f.key("c/1"))
        .await
        .expect("get")
        .expect("key")
        .mod_revision;
    assert!(listings.iter().all(|l| l.revision == listings[0].revision));
    assert!(listings[0].revision >= written, "{listings:?}");
}

async fn cas_conflict_names_both_revisions(f: Fixture) {
    let other = f.second_client().await;
    let k = f.key("k");
    let r0 = f
        .store
        .create(&k, b"0".to_vec(), None)
        .await
        .expect("create");
    // Both clients read r0; the first update wins, the second conflicts.
    let r1 = other
        .update(&k, b"other".to_vec(), r0, None)
        .await
        .expect("first update");
    match f.store.update(&k, b"mine".to_vec(), r0, None).await {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => assert_eq!((key, expected, actual), (k.clone(), r0, r1)),
        other => panic!("stale update: {other:?}"),
    }
    let kv = f.store.get(&k).await.expect("get").expect("key");
    assert_eq!(text(&kv), "other");
}

/// A write that arrives after what it depends on was undone (deleted, or deleted and
/// created again) writes nothing, and says which key moved.
async fn a_guarded_create_writes_only_while_its_guard_is_as_read(f: Fixture) {
    let (handle, wep) = (f.key("handle"), f.key("wep"));
    f.store
        .create(&handle, b"h".to_vec(), None)
        .await
        .expect("create the guard");
    let read = f.store.get(&handle).await.expect("get").expect("guard");
    let guard = Guard::on(&read);
    f.store
        .create_guarded(&wep, b"1".to_vec(), &guard)
        .await
        .expect("guard holds: created");
    assert!(matches!(
        f.store.create_guarded(&wep, b"2".to_vec(), &guard).await,
        Err(Error::AlreadyExists { key }) if key == wep
    ));
    f.store
        .delete(&wep, None)
        .await
        .expect("delete the endpoint");

    f.store
        .delete(&handle, None)
        .await
        .expect("delete the guard");
    match f.store.create_guarded(&wep, b"late".to_vec(), &guard).await {
        Err(Error::Conflict {
            key,
            expected,
            actual: 0,
        }) => assert_eq!((key, expected), (handle.clone(), read.create_revision)),
        other => panic!("guard gone: {other:?}"),
    }
    let again = f
        .store
        .create(&handle, b"h".to_vec(), None)
        .await
        .expect("create the guard again");
    match f.store.create_guarded(&wep, b"late".to_vec(), &guard).await {
        Err(Error::Conflict { key, actual, .. }) => assert_eq!((key, actual), (handle, again)),
        other => panic!("guard created again: {other:?}"),
    }
    assert!(f.store.get(&wep).await.expect("get").is_none());
}

/// Several keys created in one write (an IPAM claim's affinity and block): all at one
/// revision, seen by a watch as one revision's events in key order; if any exists, none
/// is written and the error names it.
async fn create_all_writes_every_key_at_one_revision_or_none(f: Fixture) {
    let (a, b, c) = (f.key("a"), f.key("b"), f.key("c"));
    let mut watch = f.store.watch(&f.prefix, 0).await.expect("watch");
    let rev = f
        .store
        .create_all(vec![(b.clone(), b"2".to_vec()), (a.clone(), b"1".to_vec())])
        .await
        .expect("neither exists: created");
    for (key, value) in [(&a, "1"), (&b, "2")] {
        let kv = f.store.get(key).await.expect("get").expect("created");
        assert_eq!(
            (text(&kv).as_str(), kv.mod_revision, kv.create_revision),
            (value, rev, rev)
        );
    }
    assert_eq!(
        next_puts(&mut watch, 2).await,
        vec![(a.clone(), rev), (b.clone(), rev)]
    );

    match f
        .store
        .create_all(vec![
            (c.clone(), b"3".to_vec()),
            (b.clone(), b"again".to_vec()),
        ])
        .await
    {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, b),
        other => panic!("one key exists: {other:?}"),
    }
    assert!(
        f.store.get(&c).await.expect("get").is_none(),
        "half written"
    );
    let kv = f.store.get(&b).await.expect("get").expect("kept");
    assert_eq!(text(&kv), "2");
}

fn put(key: &str, value: &str, expect: Expect) -> Put {
    Put {
        key: key.to_string(),
        value: value.as_bytes().to_vec(),
        expect,
    }
}

async fn put_all_writes_every_key_as_expected_or_none(f: Fixture) {
    let (a, b, c) = (f.key("a"), f.key("b"), f.key("c"));
    let s = f.store.as_ref();
    let a_rev = s.create(&a, b"1".to_vec(), None).await.expect("create a");
    let mut watch = s.watch(&f.prefix, 0).await.expect("watch");
    // An update and a create together, given out of key order.
    let rev = match s
        .put_all(vec![
            put(&b, "b1", Expect::Absent),
            put(&a, "a2", Expect::At(a_rev)),
        ])
        .await
        .expect("put_all")
    {
        PutAll::Written(rev) => rev,
        other => panic!("both as expected: {other:?}"),
    };
    let a_now = s.get(&a).await.expect("get").expect("a");
    let b_now = s.get(&b).await.expect("get").expect("b");
    assert_eq!(
        (
            text(&a_now).as_str(),
            a_now.mod_revision,
            a_now.create_revision
        ),
        ("a2", rev, a_rev)
    );
    assert_eq!(
        (
            text(&b_now).as_str(),
            b_now.mod_revision,
            b_now.create_revision
        ),
        ("b1", rev, rev)
    );
    assert_eq!(
        next_puts(&mut watch, 2).await,
        vec![(a.clone(), rev), (b.clone(), rev)]
    );

    // A stale revision for a, c absent as expected: nothing written, both read back.
    let before = s.revision().await.expect("revision");
    match s
        .put_all(vec![
            put(&a, "a3", Expect::At(a_rev)),
            put(&c, "c1", Expect::Absent),
        ])
        .await
        .expect("put_all")
    {
        PutAll::Refused(now) => assert_eq!(now, vec![Some(a_now.clone()), None]),
        other => panic!("a moved: {other:?}"),
    }
    // b exists where it was expected absent.
    match s
        .put_all(vec![
            put(&c, "c1", Expect::Absent),
            put(&b, "b2", Expect::Absent),
        ])
        .await
        .expect("put_all")
    {
        PutAll::Refused(now) => assert_eq!(now, vec![None, Some(b_now.clone())]),
        other => panic!("b exists: {other:?}"),
    }
    assert!(s.get(&c).await.expect("get").is_none(), "half written");
    assert_eq!(s.revision().await.expect("revision"), before);

    match s
        .put_all(vec![
            put(&c, "1", Expect::Absent),
            put(&c, "2", Expect::Absent),
        ])
        .await
    {
        Err(Error::Config(msg)) => assert!(msg.contains("given twice"), "{msg}"),
        other => panic!("one key twice: {other:?}"),
    }
}

async fn lease_of_unknown_id_is_refused(f: Fixture) {
    let s = f.store.as_ref();
    let bogus = 0x1234_5678_9abc;
    match s.create(&f.key("k"), b"x".to_vec(), Some(bogus)).await {
        Err(Error::LeaseNotFound(id)) => assert_eq!(id, bogus),
        other => panic!("create with an unknown lease: {other:?}"),
    }
    assert_eq!(s.get(&f.key("k")).await.expect("get"), None);
    assert!(matches!(
        s.keep_alive(bogus).await,
        Err(Error::LeaseNotFound(_))
    ));
    assert!(matches!(
        s.revoke_lease(bogus).await,
        Err(Error::LeaseNotFound(_))
    ));
}

async fn create_race_has_exactly_one_winner(f: Fixture) {
    let a = f.store.clone();
    let b = f.second_client().await;
    for i in 0..20 {
        let key = f.key(&format!("race-{i}"));
        let (ka, kb) = (key.clone(), key.clone());
        let (a2, b2) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { a2.create(&ka, b"a".to_vec(), None).await });
        let tb = tokio::spawn(async move { b2.create(&kb, b"b".to_vec(), None).await });
        let (ra, rb) = (ta.await.expect("join"), tb.await.expect("join"));
        let winner = match (&ra, &rb) {
            (Ok(_), Err(Error::AlreadyExists { .. })) => "a",
            (Err(Error::AlreadyExists { .. }), Ok(_)) => "b",
            _ => panic!("race {i}: {ra:?} / {rb:?}"),
        };
        let kv = a.get(&key).await.expect("get").expect("key");
        assert_eq!(text(&kv), winner, "the stored value is the winner's");
    }
}

async fn concurrent_cas_increments_reach_the_exact_count(f: Fixture) {
    const TASKS: u64 = 4;
    const EACH: u64 = 25;
    let key = f.key("counter");
    f.store
        .create(&key, b"0".to_vec(), None)
        .await
        .expect("create counter");
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        // Half the tasks share the fixture's client, half have their own.
        let store = if t % 2 == 0 {
            f.store.clone()
        } else {
            f.second_client().await
        };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut written = Vec::new();
            let mut conflicts = 0;
            for _ in 0..EACH {
                let (c, v) = cas_increment(store.as_ref(), &key).await;
                conflicts += c;
                written.push(v);
            }
            (written, conflicts)
        }));
    }
    let mut all = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (written, c) = t.await.expect("join");
        all.extend(written);
        conflicts += c;
    }
    all.sort_unstable();
    // Every value 1..=N was written exactly once: no lost update, no duplicate.
    assert_eq!(all, (1..=TASKS * EACH).collect::<Vec<_>>());
    let kv = f.store.get(&key).await.expect("get").expect("counter");
    assert_eq!(text(&kv), (TASKS * EACH).to_string());
    println!(
        "{} increments, {conflicts} CAS conflicts retried",
        TASKS * EACH
    );
}

async fn watch_delivers_in_order_and_resumes_without_gap_or_duplicate(f: Fixture) {
    let s = f.store.as_ref();
    let watched = f.key("w/");
    s.create(&f.key("w/seed"), b"seed".to_vec(), None)
        .await
        .expect("seed");
    let listing = s.list(&watched).await.expect("list");
    let mut watch = s
        .watch(&watched, listing.revision + 1)
        .await
        .expect("watch");

    // A mix of creates, updates, deletes, and writes outside the watched prefix.
    let mut expected: Vec<(String, Option<String>)> = Vec::new();
    for i in 0..10 {
        let k = f.key(&format!("w/k{}", i % 4));
        match s.get(&k).await.expect("get") {
            None => {
                s.create(&k, format!("v{i}").into_bytes(), None)
                    .await
                    .expect("create");
                expected.push((k, Some(format!("v{i}"))));
            }
            Some(kv) if i % 3 == 0 => {
                s.delete(&k, Some(kv.mod_revision)).await.expect("delete");
                expected.push((k, None));
            }
            Some(kv) => {
                s.update(&k, format!("v{i}").into_bytes(), kv.mod_revision, None)
                    .await
                    .expect("update");
                expected.push((k, Some(format!("v{i}"))));
            }
        }
        s.create(&f.key(&format!("elsewhere-{i}")), b"x".to_vec(), None)
            .await
            .expect("unwatched write");
    }
    s.delete(&f.key("w/seed"), None).await.expect("delete seed");
    expected.push((f.key("w/seed"), None));

    let events = next_events(&mut watch, expected.len()).await;
    let seen: Vec<(String, Option<String>)> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Put(kv) => (kv.key.clone(), Some(text(kv))),
            WatchEvent::Delete { key, .. } => (key.clone(), None),
        })
        .collect();
    assert_eq!(seen, expected);
    assert!(
        events.windows(2).all(|w| w[0].revision() < w[1].revision()),
        "strictly increasing revisions: {events:?}"
    );
    for e in &events {
        if let WatchEvent::Put(kv) = e {
            assert!(kv.create_revision <= kv.mod_revision && kv.lease.is_none());
        }
    }
    assert!(nothing_before_marker(s, &mut watch, &f.key("w/zz-marker")).await);

    // Resume after the 4th event: exactly the rest, then the marker.
    let cut = 3;
    let mut resumed = s
        .watch(&watched, events[cut].revision() + 1)
        .await
        .expect("resume");
    let rest = next_events(&mut resumed, events.len() - cut).await;
    assert_eq!(&rest[..events.len() - cut - 1], &events[cut + 1..]);
    assert_eq!(rest[events.len() - cut - 1].key(), f.key("w/zz-marker"));

    // Replaying from the first event's revision gives the same history again.
    let mut replay = s
        .watch(&watched, events[0].revision())
        .await
        .expect("replay");
    assert_eq!(next_events(&mut replay, events.len()).await, events);
}

async fn watch_from_zero_starts_after_the_current_revision(f: Fixture) {
    let s = f.store.as_ref();
    s.create(&f.key("old"), b"old".to_vec(), None)
        .await
        .expect("create");
    let mut watch = s.watch(&f.prefix, 0).await.expect("watch");
    let r = s
        .create(&f.key("new"), b"new".to_vec(), None)
        .await
        .expect("create");
    match next_event(&mut watch).await {
        WatchEvent::Put(kv) => assert_eq!((kv.key, kv.mod_revision), (f.key("new"), r)),
        other => panic!("expected the new put, got {other:?}"),
    }
}

async fn watch_sees_writes_of_another_client(f: Fixture) {
    let other = f.second_client().await;
    let mut watch = f.store.watch(&f.prefix, 0).await.expect("watch");
    let r1 = other
        .create(&f.key("x"), b"1".to_vec(), None)
        .await
        .expect("create");
    let r2 = other.delete(&f.key("x"), None).await.expect("delete");
    assert_eq!(r2.mod_revision, r1);
    let events = next_events(&mut watch, 2).await;
    assert!(matches!(&events[0], WatchEvent::Put(kv) if kv.mod_revision == r1));
    assert!(
        matches!(&events[1], WatchEvent::Delete { key, revision } if *key == f.key("x") && *revision > r1)
    );
}

async fn watch_from_before_compaction_is_refused(f: Fixture) {
    let s = f.store.as_ref();
    let first = s
        .create(&f.key("a"), b"1".to_vec(), None)
        .await
        .expect("create");
    let mut last = first;
    for i in 0..5 {
        last = s
            .update(&f.key("a"), format!("{i}").into_bytes(), last, None)
            .await
            .expect("update");
    }
    f.compact(last).await;

    // A start before the compaction point: the watch ends with Compacted (at once, or as its
    // first item), naming the oldest revision still kept.
    let outcome = match s.watch(&f.prefix, first).await {
        Err(e) => Err(e),
        Ok(mut w) => match tokio::time::timeout(DEADLINE, w.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => panic!("watch closed without an error"),
            Err(_) => panic!("no compaction error within {DEADLINE:?}"),
        },
    };
    match outcome {
        Err(Error::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (first, last));
        }
        other => panic!("watch from a compacted revision: {other:?}"),
    }

    // From the compaction point itself the history is still there.
    let mut w = s.watch(&f.prefix, last).await.expect("watch");
    match next_event(&mut w).await {
        WatchEvent::Put(kv) => assert_eq!((text(&kv).as_str(), kv.mod_revision), ("4", last)),
        other => panic!("{other:?}"),
    }
}

async fn ttl_expiry_deletes_the_key_with_a_delete_event(f: Fixture) {
    let s = f.store.as_ref();
    let lease = s.grant_lease(Duration::from_secs(1)).await.expect("grant");
    assert!(lease.ttl >= Duration::from_secs(1));
    let k = f.key("ephemeral");
    let created = s
        .create(&k, b"x".to_vec(), Some(lease.id))
        .await
        .expect("create with lease");
    assert_eq!(
        s.get(&k).await.expect("get").and_then(|kv| kv.lease),
        Some(lease.id)
    );
    let mut watch = s.watch(&f.prefix, created + 1).await.expect("watch");
    // Nothing else writes: the expiry alone must produce the event.
    match next_event(&mut watch).await {
        WatchEvent::Delete { key, revision } => {
            assert_eq!(key, k);
            assert!(revision > created);
        }
        other => panic!("expected the expiry's delete, got {other:?}"),
    }
    assert_eq!(s.get(&k).await.expect("get"), None);
    assert!(matches!(
        s.keep_alive(lease.id).await,
        Err(Error::LeaseNotFound(_))
    ));
}

async fn keep_alive_keeps_a_key_past_its_ttl(f: Fixture) {
    let s = f.store.as_ref();
    let lease = s.grant_lease(Duration::from_secs(1)).await.expect("grant");
    let k = f.key("kept");
    s.create(&k, b"x".to_vec(), Some(lease.id))
        .await
        .expect("create");
    let until = Instant::now() + lease.ttl * 3;
    while Instant::now() < until {
        s.keep_alive(lease.id).await.expect("keep alive");
        tokio::time::sleep(lease.ttl / 5).await;
    }
    assert!(
        s.get(&k).await.expect("get").is_some(),
        "kept alive past 3 TTLs"
    );
    // Left alone, it expires.
    eventually("key expires once keep-alives stop", || async {
        s.get(&k).await.expect("get").is_none()
    })
    .await;
}

async fn revoke_deletes_every_key_of_the_lease_at_one_revision(f: Fixture) {
    let s = f.store.as_ref();
    let lease = s.grant_lease(Duration::from_secs(60)).await.expect("grant");
    s.create(&f.key("l1"), b"1".to_vec(), Some(lease.id))
        .await
        .expect("create");
    let r = s
        .create(&f.key("l2"), b"2".to_vec(), Some(lease.id))
        .await
        .expect("create");
    s.create(&f.key("plain"), b"3".to_vec(), None)
        .await
        .expect("create");
    let mut watch = s.watch(&f.prefix, r + 1).await.expect("watch");
    let _plain = next_event(&mut watch).await;
    s.revoke_lease(lease.id).await.expect("revoke");
    let events = next_events(&mut watch, 2).await;
    let mut keys: Vec<&str> = events.iter().map(|e| e.key()).collect();
    keys.sort_unstable();
    assert_eq!(keys, [f.key("l1"), f.key("l2")]);
    assert!(
        events
            .iter()
            .all(|e| matches!(e, WatchEvent::Delete { .. }))
    );
    assert_eq!(events[0].revision(), events[1].revision());
    assert_eq!(s.get(&f.key("l1")).await.expect("get"), None);
    assert!(s.get(&f.key("plain")).await.expect("get").is_some());
    assert!(matches!(
        s.keep_alive(lease.id).await,
        Err(Error::LeaseNotFound(_))
    ));
}

async fn update_replaces_the_lease(f: Fixture) {
    let s = f.store.as_ref();
    let lease = s.grant_lease(Duration::from_secs(60)).await.expect("grant");
    let k = f.key("k");
    let r = s
        .create(&k, b"1".to_vec(), Some(lease.id))
        .await
        .expect("create");
    s.update(&k, b"2".to_vec(), r, None).await.expect("update");
    assert_eq!(s.get(&k).await.expect("get").and_then(|kv| kv.lease), None);
    s.revoke_lease(lease.id).await.expect("revoke");
    let kv = s
        .get(&k)
        .await
        .expect("get")
        .expect("detached key survives");
    assert_eq!(text(&kv), "2");
}

async fn lease_time_to_live_counts_down_and_ends_with_the_lease(f: Fixture) {
    let s = f.store.as_ref();
    let lease = s.grant_lease(Duration::from_secs(60)).await.expect("grant");
    let left = s
        .lease_time_to_live(lease.id)
        .await
        .expect("time to live")
        .expect("both backends know it");
    assert!(left <= lease.ttl && left > Duration::ZERO, "{left:?}");
    s.revoke_lease(lease.id).await.expect("revoke");
    assert!(matches!(
        s.lease_time_to_live(lease.id).await,
        Err(Error::LeaseNotFound(_))
    ));
}

// ===== local backend only =====

mod local_only {
    use std::process::{Command, Stdio};

    use super::*;

    /// Environment variable that makes [`two_processes_share_one_file`] play the second
    /// process (the test re-runs its own binary with it set).
    const CHILD_DB_ENV: &str = "CONFORMANCE_CHILD_DB";
    const INCREMENTS: u64 = 30;

    /// One side of the two-process test: CAS-increments the shared counter, announces it is
    /// done, and checks through its watch that it saw every counter value exactly once, in
    /// order, and the other side's announcement.
    async fn share_counter(store: &dyn Datastore, me: &str, other: &str) {
        let mut watch = store.watch("/x/", 1).await.expect("watch");
        for _ in 0..INCREMENTS {
            cas_increment(store, "/x/counter").await;
        }
        store
            .create(&format!("/x/done-{me}"), b"done".to_vec(), None)
            .await
            .expect("announce");
        let mut values = Vec::new();
        let mut other_done = false;
        let mut last_rev = 0;
        while !(other_done && values.last() == Some(&(2 * INCREMENTS))) {
            let event = next_event(&mut watch).await;
            assert!(event.revision() > last_rev, "ordered: {event:?}");
            last_rev = event.revision();
            match event {
                WatchEvent::Put(kv) if kv.key == "/x/counter" => {
                    values.push(text(&kv).parse::<u64>().expect("counter"));
                }
                WatchEvent::Put(kv) if kv.key == format!("/x/done-{other}") => other_done = true,
                _ => {}
            }
        }
        assert_eq!(values, (0..=2 * INCREMENTS).collect::<Vec<_>>());
    }

    /// Two processes CAS-increment one counter in one file and watch each other. The test
    /// is both: run normally it is the first process and spawns its own binary (this test
    /// only, `CHILD_DB_ENV` set) as the second; each side asserts what it saw.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_share_one_file() {
        if let Ok(path) = std::env::var(CHILD_DB_ENV) {
            let store = LocalStore::open(&path).expect("child: open");
            share_counter(&store, "child", "parent").await;
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("datastore.db");
        let store = LocalStore::open(&path).expect("open");
        store
            .create("/x/counter", b"0".to_vec(), None)
            .await
            .expect("create counter");

        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe)
            .args([
                "local_only::two_processes_share_one_file",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the second process");
        let child_pid = child.id();

        share_counter(&store, "parent", "child").await;

        let output = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + DEADLINE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return child.wait_with_output().expect("child output");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            child.wait_with_output().expect("child output")
        })
        .await
        .expect("join");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "second process (pid {child_pid}) failed: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let kv = store
            .get("/x/counter")
            .await
            .expect("get")
            .expect("counter");
        assert_eq!(text(&kv), (2 * INCREMENTS).to_string());
    }

    /// A new store file in a directory of its own, with `/x/k` = `v` written.
    async fn store_with_one_key() -> (TempDir, std::path::PathBuf, LocalStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("datastore.db");
        let store = LocalStore::open(&path).expect("open");
        store
            .create("/x/k", b"v".to_vec(), None)
            .await
            .expect("write");
        (dir, path, store)
    }

    #[tokio::test]
    async fn a_new_store_file_and_its_wal_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, _path, _store) = store_with_one_key().await;
        for file in ["datastore.db", "datastore.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    /// A CNI plugin is often the last process to close the file: it leaves the WAL for the
    /// next one to read instead of copying it into the database on its way out.
    #[tokio::test]
    async fn the_last_to_close_leaves_the_wal_and_the_next_opener_reads_it() {
        let (dir, path, store) = store_with_one_key().await;
        drop(store);
        let wal = std::fs::metadata(dir.path().join("datastore.db-wal")).map(|m| m.len());
        assert!(
            matches!(wal, Ok(len) if len > 0),
            "the WAL after the last close: {wal:?}"
        );
        let store = LocalStore::open(&path).expect("reopen");
        let kv = store.get("/x/k").await.expect("get").expect("the key");
        assert_eq!(text(&kv), "v");
    }

    /// Without a checkpoint on close the WAL is still copied into the database every few
    /// hundred pages, so a process opening the file alone never reads back much of it.
    #[tokio::test]
    async fn the_wal_stays_bounded_over_many_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("datastore.db");
        let block = vec![b'x'; 3000];
        for round in 0..20 {
            // A process per round, as CNI plugins come and go.
            let store = LocalStore::open(&path).expect("open");
            for i in 0..50 {
                let key = format!("/x/{round}/{i}");
                store
                    .create(&key, block.clone(), None)
                    .await
                    .expect("write");
            }
        }
        let wal = std::fs::metadata(dir.path().join("datastore.db-wal"))
            .expect("the WAL")
            .len();
        // SQLite's default (1000 pages) would let it reach 4 MiB; each write here is a few
        // pages, and a checkpoint comes at the first commit past the limit.
        let bound = 2 * 1024 * 1024;
        assert!(wal <= bound, "WAL of {wal} bytes after 1000 writes");
    }

    #[tokio::test]
    async fn history_beyond_the_bound_is_compacted() {
        let f = Fixture::local_with(
            "history",
            LocalOptions {
                history: 5,
                ..LocalOptions::default()
            },
        )
        .await;
        let s = f.store.as_ref();
        let first = s
            .create(&f.key("a"), b"0".to_vec(), None)
            .await
            .expect("create");
        let mut rev = first;
        for i in 1..10 {
            rev = s
                .update(&f.key("a"), i.to_string().into_bytes(), rev, None)
                .await
                .expect("update");
        }
        let mut w = s.watch(&f.prefix, first).await.expect("watch");
        match w.next().await {
            Some(Err(Error::Compacted { requested, oldest })) => {
                assert_eq!((requested, oldest), (first, rev - 4));
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
        // The last 5 revisions are still there.
        let mut w = s.watch(&f.prefix, rev - 4).await.expect("watch");
        let events = next_events(&mut w, 5).await;
        assert_eq!(events.last().map(WatchEvent::revision), Some(rev));
    }

    #[tokio::test]
    async fn reopening_keeps_data_revisions_and_leases() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("datastore.db");
        let (rev, lease) = {
            let s = LocalStore::open(&path).expect("open");
            let lease = s
                .grant_lease(Duration::from_secs(600))
                .await
                .expect("grant");
            let rev = s
                .create("/k", b"v".to_vec(), Some(lease.id))
                .await
                .expect("create");
            (rev, lease)
        };
        let s = LocalStore::open(&path).expect("reopen");
        assert_eq!(s.revision().await.expect("revision"), rev);
        let kv = s.get("/k").await.expect("get").expect("key");
        assert_eq!((kv.mod_revision, kv.lease), (rev, Some(lease.id)));
        s.keep_alive(lease.id)
            .await
            .expect("lease survives a reopen");
    }
}

// ===== etcd backend only =====

mod etcd_only {
    use datastore::config::{DatastoreConfig, DatastoreType};
    use lab::etcd::{EtcdServer, TestPki};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_client_certificates_are_used() {
        let pki = tokio::task::spawn_blocking(TestPki::generate)
            .await
            .expect("join")
            .expect("test PKI (openssl)");
        let server_tls = pki.server();
        let server = tokio::task::spawn_blocking(move || EtcdServer::start_local_tls(&server_tls))
            .await
            .expect("join")
            .expect("start etcd with TLS");
        assert!(server.endpoint().starts_with("https://"));

        let config = DatastoreConfig {
            datastore_type: DatastoreType::Etcdv3,
            etcd_endpoints: server.endpoints(),
            etcd_ca_cert_file: Some(pki.ca_file()),
            etcd_cert_file: Some(pki.client_cert_file()),
            etcd_key_file: Some(pki.client_key_file()),
            ..DatastoreConfig::default()
        };
        let store = datastore::config::connect(&config)
            .await
            .expect("connect with client certificates");
        let r = store
            .create("/tls/k", b"v".to_vec(), None)
            .await
            .expect("create over TLS");
        assert_eq!(
            store
                .get("/tls/k")
                .await
                .expect("get")
                .map(|kv| kv.mod_revision),
            Some(r)
        );

        // Without a client certificate the server refuses us, with an error naming it.
        let no_cert = DatastoreConfig {
            etcd_cert_file: None,
            etcd_key_file: None,
            ..config.clone()
        };
        match datastore::config::connect(&no_cert).await {
            Err(Error::Backend(msg)) => assert!(msg.contains(server.endpoint()), "{msg}"),
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("connected without a client certificate"),
        }
    }

    #[tokio::test]
    async fn calls_fail_with_the_endpoint_named_when_etcd_is_down() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let outcome = tokio::time::timeout(
            DEADLINE,
            EtcdStore::connect(EtcdOptions::new(vec![endpoint.clone()])),
        )
        .await
        .expect("connect must give up on its own");
        match outcome {
            Err(Error::Backend(msg)) => assert!(msg.contains(&endpoint), "{msg}"),
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("connected to nothing"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_store_works_again_after_etcd_restarts() {
        let mut server = tokio::task::spawn_blocking(EtcdServer::start_local)
            .await
            .expect("join")
            .expect("start etcd");
        let store = EtcdStore::connect(EtcdOptions::new(server.endpoints()))
            .await
            .expect("connect");
        let r = store
            .create("/restart/k", b"v".to_vec(), None)
            .await
            .expect("create");
        server.kill();
        assert!(matches!(
            store.get("/restart/k").await,
            Err(Error::Backend(_))
        ));
        let mut server = tokio::task::spawn_blocking(move || server.restart().map(|()| server))
            .await
            .expect("join")
            .expect("restart etcd");
        eventually("calls succeed again", || async {
            store.get("/restart/k").await.is_ok()
        })
        .await;
        let kv = store
            .get("/restart/k")
            .await
            .expect("get")
            .expect("key kept");
        assert_eq!(kv.mod_revision, r);
        // Watches started after the restart work; one from before the outage resumes.
        let mut w = store.watch("/restart/", r).await.expect("watch");
        assert_eq!(next_event(&mut w).await.revision(), r);
        let r2 = store
            .update("/restart/k", b"w".to_vec(), r, None)
            .await
            .expect("update");
        assert_eq!(next_event(&mut w).await.revision(), r2);
        server.kill();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_ends_with_an_error_and_calls_fail_when_etcd_dies() {
        let mut server = tokio::task::spawn_blocking(EtcdServer::start_local)
            .await
            .expect("join")
            .expect("start etcd");
        let store = EtcdStore::connect(EtcdOptions::new(server.endpoints()))
            .await
            .expect("connect");
        store
            .create("/die/k", b"v".to_vec(), None)
            .await
            .expect("create");
        let mut watch = store.watch("/die/", 0).await.expect("watch");
        server.kill();
        match tokio::time::timeout(DEADLINE, watch.next()).await {
            Ok(Some(Err(Error::Backend(msg)))) => {
                assert!(msg.contains(server.endpoint()), "{msg}")
            }
            Ok(other) => panic!("expected a backend error, got {other:?}"),
            Err(_) => panic!("watch did not notice etcd dying within {DEADLINE:?}"),
        }
        match tokio::time::timeout(DEADLINE, store.get("/die/k")).await {
            Ok(Err(Error::Backend(msg))) => assert!(msg.contains(server.endpoint()), "{msg}"),
            Ok(other) => panic!("expected a backend error, got {other:?}"),
            Err(_) => panic!("get hung with etcd down"),
        }
    }
}
