//! The supervisor of calico-node's long-running tasks: every one of them runs for the
//! life of the process, so any end (a return, an error, a panic) is a failure. The
//! supervisor records it in [`Liveness`] and hands it to `run`, which exits non-zero with
//! the task's name and reason: a half-alive agent (routes frozen, status gone, health
//! still OK) is worse than a restart, and a restart keeps traffic flowing (graceful
//! restart, kernel routes kept).
//!
//! Failpoints make the faults testable on the real binary: `CALICO_RS_FAILPOINTS=
//! "<task>=<panic|exit|hang>@<delay>;..."` (e.g. `dataplane=panic@2s`) makes the named task
//! panic, return, or stop being polled (stuck) after the delay. Unset, nothing changes.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::task::JoinSet;

use crate::liveness::Liveness;

/// How a supervised task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExit {
    pub task: &'static str,
    pub reason: String,
}

/// The tasks that ended together: the first is the cause, the others ended because of it
/// (a task whose input channel or netlink handle went with the first one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exits {
    pub cause: TaskExit,
    pub consequences: Vec<TaskExit>,
}

/// How long after the first end the supervisor waits for the ends it caused, so that the
/// cause is named even when a consequence is joined first (the two run on other threads).
const SETTLE: Duration = Duration::from_millis(200);

/// What a task's future returns, said as the reason it ended.
pub trait TaskOutcome {
    fn reason(self) -> String;
}

impl TaskOutcome for () {
    fn reason(self) -> String {
        "it returned".to_string()
    }
}

impl TaskOutcome for anyhow::Result<()> {
    fn reason(self) -> String {
        match self {
            Ok(()) => "it returned".to_string(),
            Err(e) => format!("{e:#}"),
        }
    }
}

/// What a failpoint does to its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    Panic,
    Exit,
    Hang,
}

/// The failpoints of a run, by task name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failpoints(BTreeMap<String, (FailAction, Duration)>);

impl Failpoints {
    /// Parses `task=action@delay;...`; the delay is humantime (`2s`, `500ms`), default 0.
    pub fn parse(text: &str) -> Result<Failpoints, String> {
        let mut points = BTreeMap::new();
        for item in text
            .split([';', ','])
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let (task, rest) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}': expected <task>=<panic|exit|hang>[@delay]"))?;
            let (action, delay) = rest.split_once('@').unwrap_or((rest, "0s"));
            let action = match action {
                "panic" => FailAction::Panic,
                "exit" => FailAction::Exit,
                "hang" => FailAction::Hang,
                other => return Err(format!("'{item}': unknown action '{other}'")),
            };
            let delay = humantime::parse_duration(delay)
                .map_err(|e| format!("'{item}': delay '{delay}': {e}"))?;
            points.insert(task.trim().to_string(), (action, delay));
        }
        Ok(Failpoints(points))
    }

    /// Task names the failpoints refer to.
    pub fn tasks(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    fn get(&self, task: &str) -> Option<(FailAction, Duration)> {
        self.0.get(task).copied()
    }
}

/// Runs `fut` under the failpoint `point`: `None` when the failpoint made it return.
async fn with_failpoint<F: Future>(
    task: &'static str,
    point: Option<(FailAction, Duration)>,
    fut: F,
) -> Option<F::Output> {
    let Some((action, delay)) = point else {
        return Some(fut.await);
    };
    let mut fut = std::pin::pin!(fut);
    tokio::select! {
        out = &mut fut => return Some(out),
        () = tokio::time::sleep(delay) => {}
    }
    match action {
        FailAction::Panic => panic!("failpoint {task}=panic"),
        FailAction::Exit => None,
        // The task's future stays alive but is never polled again, as a task blocked in
        // a call that never returns.
        FailAction::Hang => std::future::pending().await,
    }
}

/// Records when each poll of `inner` starts. The poll that ends a task starts before the
/// task drops what it holds (its channels, its netlink handle), so its start orders a
/// cause before the ends it causes, as long as the cause is joined within [`SETTLE`] of
/// the first end.
struct PollStarts<F> {
    inner: Pin<Box<F>>,
    last: Arc<Mutex<Instant>>,
}

impl<F: Future> Future for PollStarts<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
        self.inner.as_mut().poll(cx)
    }
}

/// A panic's message, as far as it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Owns the long-running tasks (aborted when it drops) and reports the first to end.
pub struct Supervisor {
    running: JoinSet<(Instant, TaskExit)>,
    liveness: Liveness,
    failpoints: Failpoints,
}

impl Supervisor {
    /// A supervisor recording into `liveness`.
    pub fn new(liveness: Liveness, failpoints: Failpoints) -> Supervisor {
        Supervisor {
            running: JoinSet::new(),
            liveness,
            failpoints,
        }
    }

    /// The liveness registry its tasks report to.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// Spawns `fut` as the task `name`, which must run for the life of the process.
    pub fn spawn<F>(&mut self, name: &'static str, fut: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutcome + Send,
    {
        self.liveness.register(name);
        let point = self.failpoints.get(name);
        let liveness = self.liveness.clone();
        self.running.spawn(async move {
            let last_poll = Arc::new(Mutex::new(Instant::now()));
            let timed = PollStarts {
                inner: Box::pin(with_failpoint(name, point, fut)),
                last: last_poll.clone(),
            };
            let ended = AssertUnwindSafe(timed).catch_unwind().await;
            let at = last_poll
                .lock()
                .map(|t| *t)
                .unwrap_or_else(|_| Instant::now());
            let reason = match ended {
                Ok(Some(out)) => out.reason(),
                Ok(None) => "ended by a failpoint".to_string(),
                Err(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
            };
            liveness.ended(name, &reason);
            (at, TaskExit { task: name, reason })
        });
    }

    /// Waits for the first task to end, then for the ends it causes within [`SETTLE`]; the
    /// one that ended first is the cause.
    pub async fn next_exits(&mut self) -> Exits {
        let mut ended = vec![self.next_one().await];
        let deadline = tokio::time::Instant::now() + SETTLE;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.next_one()).await {
                Ok(exit) => ended.push(exit),
                Err(_) => break,
            }
        }
        ended.sort_by_key(|(at, _)| *at);
        let mut exits = ended.into_iter().map(|(_, exit)| exit);
        let cause = exits.next().unwrap_or(TaskExit {
            task: "unknown",
            reason: "no task ended".to_string(),
        });
        Exits {
            cause,
            consequences: exits.collect(),
        }
    }

    async fn next_one(&mut self) -> (Instant, TaskExit) {
        loop {
            match self.running.join_next().await {
                Some(Ok(exit)) => return exit,
                // Cancelled (the set is being dropped) or a panic outside the catch.
                Some(Err(e)) => {
                    return (
                        Instant::now(),
                        TaskExit {
                            task: "unknown",
                            reason: e.to_string(),
                        },
                    );
                }
                None => std::future::pending::<()>().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failpoints_parse_and_bad_ones_say_why() {
        let f =
            Failpoints::parse("dataplane=panic@2s; syncer=hang@500ms,bgp=exit").unwrap_or_default();
        assert_eq!(
            f.get("dataplane"),
            Some((FailAction::Panic, Duration::from_secs(2)))
        );
        assert_eq!(
            f.get("syncer"),
            Some((FailAction::Hang, Duration::from_millis(500)))
        );
        assert_eq!(f.get("bgp"), Some((FailAction::Exit, Duration::ZERO)));
        assert!(
            Failpoints::parse("dataplane=explode")
                .is_err_and(|e| e.contains("unknown action 'explode'"))
        );
        assert!(Failpoints::parse("dataplane").is_err_and(|e| e.contains("expected")));
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_name_and_message() {
        let live = Liveness::new(Duration::from_secs(30));
        let mut sup = Supervisor::new(live.clone(), Failpoints::default());
        sup.spawn("forever", std::future::pending::<()>());
        sup.spawn("boom", async {
            if true {
                panic!("kernel said no");
            }
        });
        let exit = sup.next_exits().await.cause;
        assert_eq!(exit.task, "boom");
        assert_eq!(exit.reason, "panicked: kernel said no");
        assert_eq!(
            live.problems(),
            vec!["task boom ended: panicked: kernel said no"]
        );
    }

    #[tokio::test]
    async fn a_task_returning_an_error_is_reported() {
        let mut sup = Supervisor::new(
            Liveness::new(Duration::from_secs(30)),
            Failpoints::default(),
        );
        sup.spawn("syncer", async { Err(anyhow::anyhow!("watch closed")) });
        assert_eq!(
            sup.next_exits().await.cause,
            TaskExit {
                task: "syncer",
                reason: "watch closed".into()
            }
        );
    }

    /// Closes its channel first, then takes a while over the rest, as a task with a big
    /// state: the channel's reader ends, and is joined, before the holder is. The close is
    /// made from another thread so that the reader wakes on the other worker (a wake from
    /// the worker itself would wait in its slot until the holder is done).
    struct SlowToDrop(Option<tokio::sync::watch::Sender<u32>>);

    impl Drop for SlowToDrop {
        fn drop(&mut self) {
            let tx = self.0.take();
            let _ = std::thread::spawn(move || drop(tx)).join();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_task_that_ended_first_is_the_cause_even_when_its_consequence_is_joined_first() {
        for _ in 0..5 {
            let mut sup = Supervisor::new(
                Liveness::new(Duration::from_secs(30)),
                Failpoints::parse("producer=exit@10ms").unwrap_or_default(),
            );
            let (tx, mut rx) = tokio::sync::watch::channel(0);
            sup.spawn(
                "consumer",
                async move { while rx.changed().await.is_ok() {} },
            );
            let holder = SlowToDrop(Some(tx));
            sup.spawn("producer", async move {
                let _holder = holder;
                std::future::pending::<()>().await
            });
            sup.spawn("forever", std::future::pending::<()>());
            let exits = sup.next_exits().await;
            assert_eq!(exits.cause.task, "producer");
            assert_eq!(exits.cause.reason, "ended by a failpoint");
            assert_eq!(
                exits.consequences,
                vec![TaskExit {
                    task: "consumer",
                    reason: "it returned".into()
                }]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failpoints_panic_exit_and_hang_their_task() {
        let live = Liveness::new(Duration::from_secs(3));
        let points = Failpoints::parse("a=panic@1s;b=exit@2s;c=hang@1s").unwrap_or_default();
        let mut sup = Supervisor::new(live.clone(), points);
        for name in ["a", "b", "c"] {
            let mut hb = live.heartbeat(name);
            sup.spawn(name, async move {
                for _ in 0..1000 {
                    hb.tick().await;
                }
            });
        }
        assert_eq!(
            sup.next_exits().await.cause.reason,
            "panicked: failpoint a=panic"
        );
        assert_eq!(sup.next_exits().await.cause.reason, "ended by a failpoint");
        // c is still there but no longer beats.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let problems = live.problems();
        assert!(
            problems.iter().any(|p| p.starts_with("task c is stuck")),
            "{problems:?}"
        );
    }
}
