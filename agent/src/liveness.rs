//! Whether every long-running task of calico-node is alive: not ended, and not stuck.
//!
//! A task that waits for input is idle, not stuck; one blocked inside a handler (a kernel
//! or datastore call that never returns) is stuck. Only the task can tell the two apart,
//! so each one with a loop holds a [`Heartbeat`] and polls [`Heartbeat::tick`] in the same
//! `select!` as its inputs: while the loop is waiting it beats every period, while it is
//! blocked it cannot. `/liveness`, `/readiness` and `calicoctl node status` read the
//! [`Liveness`] registry (Felix's health aggregator does the same with timeouts per
//! reporter).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

// tokio's clock, so that tests can pause and advance it.
use tokio::time::Instant;

/// How often an idle task beats.
const BEAT_PERIOD: Duration = Duration::from_secs(1);

/// The registry of supervised tasks; cloning shares it.
#[derive(Clone)]
pub struct Liveness {
    epoch: Instant,
    /// Longest silence of a heartbeat before its task counts as stuck.
    stuck_after: Duration,
    tasks: Arc<Mutex<BTreeMap<&'static str, Entry>>>,
}

#[derive(Default)]
struct Entry {
    /// Why the task ended, once it has.
    ended: Option<String>,
    /// Milliseconds since the epoch of its last beat, for a task with a heartbeat.
    last_beat: Option<Arc<AtomicU64>>,
}

/// What a task's [`Heartbeat`] and end look like at one instant (the input of the pure
/// verdict [`problems`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub task: &'static str,
    pub ended: Option<String>,
    pub silent_for: Option<Duration>,
}

/// Every reason the process is not live, one line each: ended tasks and stuck ones.
pub fn problems(tasks: &[TaskView], stuck_after: Duration) -> Vec<String> {
    let mut out = Vec::new();
    for t in tasks {
        if let Some(why) = &t.ended {
            out.push(format!("task {} ended: {why}", t.task));
        } else if let Some(silent) = t.silent_for.filter(|s| *s > stuck_after) {
            out.push(format!(
                "task {} is stuck: no progress for {} s (allowed {} s)",
                t.task,
                silent.as_secs(),
                stuck_after.as_secs()
            ));
        }
    }
    out
}

impl Liveness {
    /// An empty registry; a heartbeat silent for longer than `stuck_after` means stuck.
    pub fn new(stuck_after: Duration) -> Liveness {
        Liveness {
            epoch: Instant::now(),
            stuck_after,
            tasks: Arc::default(),
        }
    }

    fn tasks(&self) -> MutexGuard<'_, BTreeMap<&'static str, Entry>> {
        // Entries are plain values: a panic elsewhere cannot leave one half-written.
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers `task` as running (without a heartbeat: only its end is watched).
    pub fn register(&self, task: &'static str) {
        self.tasks().entry(task).or_default();
    }

    /// A heartbeat for `task`, which counts as stuck once it stops beating.
    pub fn heartbeat(&self, task: &'static str) -> Heartbeat {
        let cell = Arc::new(AtomicU64::new(self.now_ms()));
        self.tasks().entry(task).or_default().last_beat = Some(cell.clone());
        let mut ticker = tokio::time::interval(BEAT_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Heartbeat {
            cell,
            epoch: self.epoch,
            ticker,
        }
    }

    /// Records that `task` ended, and why.
    pub fn ended(&self, task: &'static str, why: &str) {
        self.tasks().entry(task).or_default().ended = Some(why.to_string());
    }

    /// The registered tasks as they are now.
    pub fn view(&self) -> Vec<TaskView> {
        let now = self.now_ms();
        self.tasks()
            .iter()
            .map(|(task, e)| TaskView {
                task,
                ended: e.ended.clone(),
                silent_for: e
                    .last_beat
                    .as_ref()
                    .map(|c| Duration::from_millis(now.saturating_sub(c.load(Ordering::Relaxed)))),
            })
            .collect()
    }

    /// Why the process is not live (empty when it is).
    pub fn problems(&self) -> Vec<String> {
        problems(&self.view(), self.stuck_after)
    }

    /// The names of the registered tasks.
    pub fn task_names(&self) -> Vec<&'static str> {
        self.tasks().keys().copied().collect()
    }

    /// The names of the tasks with a heartbeat (those that can be found stuck).
    pub fn watched_names(&self) -> Vec<&'static str> {
        self.tasks()
            .iter()
            .filter(|(_, e)| e.last_beat.is_some())
            .map(|(name, _)| *name)
            .collect()
    }
}

/// A task's proof of progress; see the module docs.
pub struct Heartbeat {
    cell: Arc<AtomicU64>,
    epoch: Instant,
    ticker: tokio::time::Interval,
}

impl Heartbeat {
    /// Records progress now (a long piece of work may call it between its steps).
    pub fn beat(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.cell.store(ms, Ordering::Relaxed);
    }

    /// Resolves at the next beat period, having beaten: a `select!` branch that keeps an
    /// idle loop beating.
    pub async fn tick(&mut self) {
        self.ticker.tick().await;
        self.beat();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(task: &'static str, ended: Option<&str>, silent_s: Option<u64>) -> TaskView {
        TaskView {
            task,
            ended: ended.map(str::to_string),
            silent_for: silent_s.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_beating_or_unwatched_task_is_live() {
        let tasks = [view("syncer", None, Some(2)), view("status", None, None)];
        assert!(problems(&tasks, Duration::from_secs(10)).is_empty());
    }

    #[test]
    fn an_ended_task_and_a_silent_one_are_named() {
        let tasks = [
            view("dataplane", Some("panicked: boom"), Some(1)),
            view("syncer", None, Some(31)),
            view("bgp", None, Some(3)),
        ];
        assert_eq!(
            problems(&tasks, Duration::from_secs(30)),
            vec![
                "task dataplane ended: panicked: boom".to_string(),
                "task syncer is stuck: no progress for 31 s (allowed 30 s)".to_string(),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_that_stops_ticking_goes_stale() {
        let live = Liveness::new(Duration::from_secs(5));
        let mut hb = live.heartbeat("dataplane");
        for _ in 0..10 {
            hb.tick().await;
        }
        assert!(live.problems().is_empty(), "{:?}", live.problems());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(live.problems().len(), 1, "{:?}", live.view());
    }
}
