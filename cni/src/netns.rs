//! Running code inside another network namespace: a dedicated OS thread `setns()`s into it
//! and runs its own single-threaded tokio runtime, so netlink sockets opened there belong
//! to that namespace and no other thread ever changes namespace.

use std::fs::File;
use std::future::Future;

use nix::sched::{CloneFlags, setns};
use tokio::sync::oneshot;

use crate::error::{CniError, Result, code};

/// Opens a namespace file (`/run/netns/<name>`), code 3 when it does not exist.
pub fn open(path: &str) -> Result<File> {
    File::open(path).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("cannot open the container's network namespace {path}"),
            e.to_string(),
        )
    })
}

/// Runs `f` on a fresh thread inside the namespace `ns` and returns its result.
pub async fn run_in<F, Fut, T>(ns: File, f: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            let result = (|| {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    CniError::dataplane(
                        "cannot enter the container's network namespace",
                        e.to_string(),
                    )
                })?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| CniError::dataplane("cannot start a runtime", e.to_string()))?;
                rt.block_on(f())
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| CniError::dataplane("cannot start a thread", e.to_string()))?;
    rx.await
        .map_err(|_| CniError::dataplane("the namespace thread died", ""))?
}
