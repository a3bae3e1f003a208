//! Child processes that never outlive their owner: each runs in its own process group,
//! which is killed on timeout and on drop (qemu, and prepare.sh with the apt it starts).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A child process in its own process group; the whole group is killed on drop.
pub struct Guarded {
    child: Option<Child>,
}

impl Guarded {
    /// Starts `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> Result<Guarded> {
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Guarded { child: Some(child) })
    }

    /// Kills the process group (SIGKILL) and reaps the leader.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What [`wait_deadline`] saw: the exit status (`None` on timeout, the group then killed)
/// and whatever the child wrote to its piped stdout and stderr.
pub struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Waits for the child until `timeout`, draining its piped outputs meanwhile; on timeout
/// kills its process group.
pub fn wait_deadline(guarded: &mut Guarded, timeout: Duration) -> Result<Finished> {
    let child = guarded.child.as_mut().context("child already reaped")?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            // Reaped: its process id (and group id) may be reused from now on.
            guarded.child = None;
            break Some(status);
        }
        if Instant::now() >= deadline {
            guarded.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Finished {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    let mut pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }))
}

fn join(handle: Option<JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}
