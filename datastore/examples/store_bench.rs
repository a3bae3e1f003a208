//! Prints figures for both datastore backends from one run on this machine (a benchmark, not
//! a test: nothing is asserted): sequential and concurrent compare-and-swap throughput,
//! watch latency (same client, and another client polling the same file or etcd), lease
//! expiry latency (deadline to Delete event), and the CPU idle local watches use.
//!
//! Run: `cargo run --release -p datastore --example store_bench` (starts its own etcd, from
//! the `etcd-server` package; set `ETCD_ENDPOINTS_FOR_TESTS` to use another).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::backend::{EtcdOptions, EtcdStore, LocalStore};
use datastore::{Datastore, Error, WatchEvent};

/// Errors of any kind end the run with their message.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const SEQUENTIAL: u32 = 500;
const TASKS: u32 = 4;
const EACH: u32 = 100;
const WATCHED: u32 = 200;

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("datastore.db");
    let a: Arc<dyn Datastore> = Arc::new(LocalStore::open(&path)?);
    let b: Arc<dyn Datastore> = Arc::new(LocalStore::open(&path)?);
    report("local", a.clone(), b).await?;
    let mut watches = Vec::new();
    for i in 0..10 {
        watches.push(a.watch(&format!("/idle/{i}/"), 0).await?);
    }
    let before = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "10 idle watches:               {:>8.2} % of one core",
        (cpu_seconds() - before) / 5.0 * 100.0
    );
    drop(watches);

    let etcd = tokio::task::spawn_blocking(lab::TestEtcd::from_env_or_start).await??;
    let a: Arc<dyn Datastore> =
        Arc::new(EtcdStore::connect(EtcdOptions::new(etcd.endpoints())).await?);
    let b: Arc<dyn Datastore> =
        Arc::new(EtcdStore::connect(EtcdOptions::new(etcd.endpoints())).await?);
    report("etcd", a, b).await?;
    Ok(())
}

async fn report(name: &str, a: Arc<dyn Datastore>, b: Arc<dyn Datastore>) -> Result<()> {
    let prefix = format!("/bench/{:x}/", rand::random::<u64>());
    println!("== {name}");

    let key = format!("{prefix}seq");
    let mut rev = a.create(&key, b"0".to_vec(), None).await?;
    let start = Instant::now();
    for i in 0..SEQUENTIAL {
        rev = a
            .update(&key, i.to_string().into_bytes(), rev, None)
            .await?;
    }
    let per_sec = f64::from(SEQUENTIAL) / start.elapsed().as_secs_f64();
    println!("sequential CAS updates:        {per_sec:>8.0} /s");

    let counter = format!("{prefix}counter");
    a.create(&counter, b"0".to_vec(), None).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for _ in 0..EACH {
                loop {
                    let kv = store.get(&counter).await?.ok_or("counter missing")?;
                    let n: u64 = String::from_utf8_lossy(&kv.value).parse()?;
                    match store
                        .update(
                            &counter,
                            (n + 1).to_string().into_bytes(),
                            kv.mod_revision,
                            None,
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok::<u32, Box<dyn std::error::Error + Send + Sync>>(conflicts)
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await??;
    }
    let per_sec = f64::from(TASKS * EACH) / start.elapsed().as_secs_f64();
    println!(
        "concurrent CAS increments:     {per_sec:>8.0} /s ({TASKS} tasks, 2 clients, \
         {conflicts} conflicts retried)"
    );

    for (label, watcher) in [("same client", a.clone()), ("other client", b.clone())] {
        let mut lat = watch_latency(
            a.as_ref(),
            watcher.as_ref(),
            &format!("{prefix}w/{}/", label.replace(' ', "-")),
        )
        .await?;
        lat.sort();
        println!(
            "watch latency, {label:<12}:  median {:>7.2?}  p99 {:>7.2?}",
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100]
        );
    }

    let lease = a.grant_lease(Duration::from_secs(1)).await?;
    let granted = Instant::now();
    let k = format!("{prefix}ttl");
    let created = a.create(&k, b"x".to_vec(), Some(lease.id)).await?;
    let mut w = b.watch(&k, created + 1).await?;
    match tokio::time::timeout(Duration::from_secs(30), w.next()).await {
        Ok(Some(Ok(WatchEvent::Delete { .. }))) => {}
        other => return Err(format!("no expiry event: {other:?}").into()),
    }
    let late = granted.elapsed().saturating_sub(lease.ttl);
    println!(
        "lease expiry: Delete event {:>7.2?} after the {:?} TTL",
        late, lease.ttl
    );
    Ok(())
}

/// Per write by `writer`: the time from the write call until `watcher`'s watch delivers it.
async fn watch_latency(
    writer: &dyn Datastore,
    watcher: &dyn Datastore,
    prefix: &str,
) -> Result<Vec<Duration>> {
    let mut w = watcher.watch(prefix, 0).await?;
    let mut out = Vec::new();
    for i in 0..WATCHED {
        // A random pause first, so writes do not fall in step with a poller.
        tokio::time::sleep(Duration::from_micros(rand::random::<u64>() % 20_000)).await;
        let start = Instant::now();
        let rev = writer
            .create(&format!("{prefix}{i}"), b"x".to_vec(), None)
            .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
                Ok(Some(Ok(e))) if e.revision() == rev => break,
                Ok(Some(Ok(_))) => continue,
                other => return Err(format!("watch: {other:?}").into()),
            }
        }
        out.push(start.elapsed());
    }
    Ok(out)
}

/// CPU time (user + system) this process has used, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, in clock ticks of 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}
