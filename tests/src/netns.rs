//! Network namespaces and the processes that run inside them, each removed on drop.
//!
//! Every namespace a run creates is named `<prefix><name>` where the prefix carries the
//! creating process id (`crs<pid>-`), so a later run can tell leftovers of dead runs
//! (removed by [`remove_leftovers`]) from namespaces of runs still going.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Prefix shared by every namespace this harness creates.
pub const NETNS_PREFIX: &str = "crs";

/// The per-process prefix, e.g. `crs4242-`.
pub fn run_prefix() -> String {
    format!("{NETNS_PREFIX}{}-", std::process::id())
}

/// Removes namespaces left behind by runs whose process is gone. Namespaces of live runs
/// (another test binary running in parallel) are left alone.
pub fn remove_leftovers() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            kill_processes_in(&name);
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// Kills every process whose network namespace is `name` (as `ip netns pids` sees it).
fn kill_processes_in(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// Runs `ip` with the given arguments and fails with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<String> {
    run_checked(Command::new("ip").args(args))
}

fn run_checked(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace owned by this run; deleted (with every process inside) on drop.
pub struct Netns {
    name: String,
}

/// Names of the namespaces this process holds: one already held is refused, never
/// replaced (two labs in one test binary must not delete each other's namespaces).
static HELD: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn held() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

impl Netns {
    /// Creates `<run prefix><short>` with `lo` up. `short` should stay short: it shows up
    /// in `ip netns list` and in log lines. Fails when this process already holds a
    /// namespace of that name.
    pub fn create(short: &str) -> Result<Netns> {
        let name = format!("{}{short}", run_prefix());
        if !held().insert(name.clone()) {
            bail!("namespace {name} is already in use by this run");
        }
        let ns = Netns { name };
        ns.set_up()?;
        Ok(ns)
    }

    fn set_up(&self) -> Result<()> {
        let name = &self.name;
        // Not held by this process, so a leftover of a dead run whose pid was reused.
        if Path::new(&format!("/run/netns/{name}")).exists() {
            kill_processes_in(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        ip(&["netns", "add", name])?;
        self.ip(&["link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The full namespace name, as `ip netns exec` wants it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the namespace file, as a CNI runtime passes it in `CNI_NETNS`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <ns> <args>`, failing on a non-zero exit.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// `ip -n <ns> -batch -` with `commands` (one per line) on its standard input, failing
    /// on a non-zero exit: thousands of routes or neighbours in one process.
    pub fn ip_batch(&self, commands: &str) -> Result<()> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["-n", self.name.as_str(), "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("starting ip -batch")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(commands.as_bytes())?;
        }
        if !child.wait()?.success() {
            bail!("ip -batch in {} failed", self.name);
        }
        Ok(())
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace and returns its output, whatever the exit.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program} in {}", self.name))
    }

    /// Runs `sh -c script` inside the namespace; fails with stderr on a non-zero exit.
    pub fn sh(&self, script: &str) -> Result<String> {
        run_checked(self.command("sh").args(["-c", script]))
    }

    /// Pings `dst` from inside the namespace: true when at least one reply came back.
    pub fn ping(&self, dst: &str, count: u32) -> bool {
        self.exec(
            "ping",
            &["-c", &count.to_string(), "-i", "0.2", "-W", "1", "-q", dst],
        )
        .map(|o| o.status.success())
        .unwrap_or(false)
    }

    /// Starts a long-running process inside the namespace; it is killed when the returned
    /// guard drops. Output goes to `log` (appended) so a failing test can show it.
    pub fn spawn(
        &self,
        program: &str,
        args: &[&str],
        env: &BTreeMap<String, String>,
        log: &Path,
    ) -> Result<Daemon> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let child = self
            .command(program)
            .args(args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {program} in {}", self.name))?;
        Ok(Daemon {
            name: format!("{program}@{}", self.name),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_processes_in(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        held().remove(&self.name);
    }
}

/// Creates a veth pair with `a_if` in `a` and `b_if` in `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    // Created inside `a` so nothing ever appears in the root namespace.
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// A process started by [`Netns::spawn`]; terminated (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Daemon {
    /// The process id (of `ip netns exec`, which execs the program itself).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where the process writes its output.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the process's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How the process ended, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends `signal` (e.g. `libc`'s SIGKILL number as a name like "KILL").
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("process already reaped")?;
        run_checked(Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]))?;
        Ok(())
    }

    /// Stops the process: SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return; // already gone
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The name used in log lines: `program@namespace`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes. Tests use it to wait
/// for an effect; the timeout only bounds a failing test, it is not a speed assertion.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when the process runs as root (the labs need it).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root netns"]
    fn a_name_this_run_holds_is_refused_and_the_holder_keeps_its_namespace() {
        let first = Netns::create("held").expect("first namespace");
        first
            .ip(&[
                "link", "add", "marker", "type", "veth", "peer", "name", "marker1",
            ])
            .expect("marker link");
        let second = Netns::create("held");
        assert!(
            second.is_err(),
            "a second namespace of the same name was made"
        );
        let links = first.ip(&["link", "show", "marker"]);
        assert!(links.is_ok(), "the holder's namespace was replaced");
        drop(first);
        let again = Netns::create("held").expect("the name is free once dropped");
        assert!(again.ip(&["link", "show", "marker"]).is_err());
    }
}
