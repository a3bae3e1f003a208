//! Real etcd servers for tests: one on 127.0.0.1 with free ports
//! ([`EtcdServer::start_local`]), optionally with TLS client certificates
//! ([`EtcdServer::start_local_tls`], certificates from [`TestPki`]), or one listening on a lab
//! address inside a network namespace ([`EtcdServer::start_in`]).
//!
//! Every server runs `etcd` from `PATH` (Debian package `etcd-server`) with a fresh data
//! directory in a temporary directory; the process is killed and the directory removed on drop.
//! [`TestEtcd::from_env_or_start`] lets a run point the tests at an existing etcd instead
//! (`ETCD_ENDPOINTS_FOR_TESTS`). Servers left behind by a killed run are removed when the next
//! server starts ([`remove_leftover_servers`]).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::netns::{Daemon, Netns};

/// Environment variable naming etcd endpoints (comma separated) that tests use instead of
/// starting their own server.
pub const ENDPOINTS_FOR_TESTS_ENV: &str = "ETCD_ENDPOINTS_FOR_TESTS";

/// Name prefix of every server's temporary directory.
const DIR_PREFIX: &str = "calico-rs-etcd-";
/// File in a server directory holding the id of the test process that owns it.
const OWNER_FILE: &str = "owner.pid";
/// File in a server directory holding etcd's process id.
const PID_FILE: &str = "etcd.pid";

/// How long a server gets to come up before the start fails (bounds a failure only).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The log line etcd 3.4/3.5 (zap logger) writes once it serves clients, after the member has
/// joined the cluster through raft (so a leader exists and writes succeed).
const READY_LINE: &str = "serving client traffic";

/// TLS material a server is started with: its certificate and key, and the CA it requires
/// client certificates to be signed by (`--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A throw-away PKI made with the `openssl` command: a CA, a server certificate for
/// 127.0.0.1/localhost and a client certificate, all in one temporary directory removed on drop.
pub struct TestPki {
    dir: TempDir,
}

impl TestPki {
    /// Generates the CA, server and client key pairs (EC P-256, valid one day).
    pub fn generate() -> Result<TestPki> {
        let dir = tempfile::Builder::new()
            .prefix("calico-rs-pki-")
            .tempdir()?;
        let d = dir.path();
        fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )?;
        fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n")?;
        let script = r#"set -e
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -subj /CN=calico-rs-test-ca -days 1 -out ca.pem
for who in server client; do
  openssl ecparam -name prime256v1 -genkey -noout -out $who.key.ec
  openssl pkcs8 -topk8 -nocrypt -in $who.key.ec -out $who.key
  openssl req -new -key $who.key -subj /CN=$who -out $who.csr
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile $who.ext -out $who.pem
done
"#;
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(d)
            .stdin(Stdio::null())
            .output()
            .context("running openssl to make test certificates")?;
        if !out.status.success() {
            bail!(
                "openssl failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(TestPki { dir })
    }

    /// The CA certificate (PEM) both sides trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's TLS material, for [`EtcdServer::start_local_tls`].
    pub fn server(&self) -> ServerTls {
        ServerTls {
            ca_file: self.ca_file(),
            cert_file: self.dir.path().join("server.pem"),
            key_file: self.dir.path().join("server.key"),
        }
    }

    /// The client certificate (PEM).
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    /// The client key (PKCS#8 PEM).
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }
}

/// The etcd process: a plain child on the host, or a [`Daemon`] inside a lab namespace.
enum Process {
    Local(Child),
    Netns(Daemon),
}

/// A running single-member etcd owned by a test: killed, and its data directory removed, on
/// drop.
pub struct EtcdServer {
    // Field order matters: the process goes before its data directory is removed.
    process: Option<Process>,
    endpoint: String,
    log: PathBuf,
    /// etcd's arguments, kept for [`restart`](Self::restart) (local servers only).
    local_args: Option<Vec<String>>,
    /// etcd's arguments, kept for [`restart_in`](Self::restart_in) (lab servers).
    netns_args: Option<Vec<String>>,
    dir: TempDir,
}

impl EtcdServer {
    /// Starts etcd on 127.0.0.1 with a free client and peer port; returns once it serves.
    pub fn start_local() -> Result<EtcdServer> {
        Self::start_local_inner(None)
    }

    /// Like [`start_local`](Self::start_local) but serving HTTPS and requiring client
    /// certificates signed by `tls.ca_file`.
    pub fn start_local_tls(tls: &ServerTls) -> Result<EtcdServer> {
        Self::start_local_inner(Some(tls))
    }

    fn start_local_inner(tls: Option<&ServerTls>) -> Result<EtcdServer> {
        // A port picked here may be taken by someone else before etcd binds it: retry then.
        let mut last_err = None;
        for _ in 0..3 {
            let (client_port, peer_port) = free_ports()?;
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            match Self::launch(None, ip, client_port, peer_port, tls) {
                Ok(server) => return Ok(server),
                Err(e) => {
                    tracing::warn!("etcd did not start, retrying with other ports: {e:#}");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    /// Starts etcd inside `ns`, listening on `addr` (an address the lab configured in `ns`)
    /// ports 2379 (clients) and 2380 (peers); returns once it serves.
    pub fn start_in(ns: &Netns, addr: IpAddr) -> Result<EtcdServer> {
        Self::launch(Some(ns), addr, 2379, 2380, None)
    }

    /// Starts a cluster of `members` etcd servers inside `ns` on `addr`, member `i` on
    /// client port 2379 + 10000 i and peer port 2380 + 10000 i; returns once all serve
    /// (a member serves only once the cluster has a quorum, so all start together).
    pub fn start_cluster_in(ns: &Netns, addr: IpAddr, members: usize) -> Result<Vec<EtcdServer>> {
        let host = addr.to_string();
        let port = |i: usize, base: u16| base + 10_000 * u16::try_from(i).unwrap_or(0);
        let initial: Vec<String> = (0..members)
            .map(|i| format!("m{i}=http://{host}:{}", port(i, 2380)))
            .collect();
        let mut servers = Vec::new();
        for i in 0..members {
            servers.push(Self::spawn_server(
                Some(ns),
                addr,
                port(i, 2379),
                port(i, 2380),
                None,
                &format!("m{i}"),
                &initial.join(","),
            )?);
        }
        for s in &mut servers {
            s.wait_ready(0)?;
        }
        Ok(servers)
    }

    fn launch(
        ns: Option<&Netns>,
        ip: IpAddr,
        client_port: u16,
        peer_port: u16,
        tls: Option<&ServerTls>,
    ) -> Result<EtcdServer> {
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let initial = format!("test=http://{host}:{peer_port}");
        let mut server = Self::spawn_server(ns, ip, client_port, peer_port, tls, "test", &initial)?;
        server.wait_ready(0)?;
        tracing::info!(endpoint = %server.endpoint, "etcd started");
        Ok(server)
    }

    /// Starts one etcd process (member `name` of `initial_cluster`) without waiting for it.
    fn spawn_server(
        ns: Option<&Netns>,
        ip: IpAddr,
        client_port: u16,
        peer_port: u16,
        tls: Option<&ServerTls>,
        name: &str,
        initial_cluster: &str,
    ) -> Result<EtcdServer> {
        remove_leftover_servers();
        let dir = tempfile::Builder::new().prefix(DIR_PREFIX).tempdir()?;
        fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())?;
        let log = dir.path().join("etcd.log");
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://{host}:{client_port}");
        let peer_url = format!("http://{host}:{peer_port}");
        let data_dir = dir.path().join("data");
        let mut args: Vec<String> = [
            "--name",
            name,
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            initial_cluster,
            // Shorter raft timers: quicker start and a 1 s minimum lease TTL.
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(tls) = tls {
            for (flag, path) in [
                ("--trusted-ca-file", &tls.ca_file),
                ("--cert-file", &tls.cert_file),
                ("--key-file", &tls.key_file),
            ] {
                args.push(flag.to_string());
                args.push(path.to_string_lossy().into_owned());
            }
            args.push("--client-cert-auth".to_string());
        }
        let process = match ns {
            None => Process::Local(spawn_local(&args, &log)?),
            Some(ns) => {
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                Process::Netns(ns.spawn("etcd", &argv, &Default::default(), &log)?)
            }
        };
        let pid = match &process {
            Process::Local(child) => Some(child.id()),
            Process::Netns(daemon) => daemon.pid(),
        };
        if let Some(pid) = pid {
            fs::write(dir.path().join(PID_FILE), pid.to_string())?;
        }
        Ok(EtcdServer {
            process: Some(process),
            endpoint: client_url,
            log,
            local_args: ns.is_none().then(|| args.clone()),
            netns_args: ns.is_some().then_some(args),
            dir,
        })
    }

    /// Waits for the ready line to appear in the log after byte `from`.
    fn wait_ready(&mut self, from: usize) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = fs::read(&self.log).unwrap_or_default();
            let new = String::from_utf8_lossy(log.get(from..).unwrap_or_default());
            if new.contains(READY_LINE) || new.contains("ready to serve client requests") {
                return Ok(());
            }
            if !self.is_running() {
                bail!("etcd exited during start:\n{}", self.log_tail(20));
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd did not serve within {START_TIMEOUT:?}:\n{}",
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The client URL as a one-element list (what the datastore config wants).
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    /// The temporary directory holding the data directory and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where etcd writes its output.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of etcd's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// True while the etcd process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.process.as_mut() {
            Some(Process::Local(child)) => matches!(child.try_wait(), Ok(None)),
            Some(Process::Netns(daemon)) => daemon.is_running(),
            None => false,
        }
    }

    /// Starts etcd again on the same ports and data (after [`kill`](Self::kill), or killing
    /// it first), as an operator restarting it would; returns once it serves. Local servers
    /// only.
    pub fn restart(&mut self) -> Result<()> {
        let Some(args) = self.local_args.clone() else {
            bail!("restart is only supported for servers from start_local");
        };
        self.kill();
        let from = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let child = spawn_local(&args, &self.log)?;
        fs::write(self.dir.path().join(PID_FILE), child.id().to_string())?;
        self.process = Some(Process::Local(child));
        self.wait_ready(usize::try_from(from).unwrap_or(usize::MAX))
    }

    /// Starts a lab server (from [`start_in`](Self::start_in)) again inside `ns`, on the same
    /// address and data, after [`kill`](Self::kill) (or killing it first); returns once it
    /// serves.
    pub fn restart_in(&mut self, ns: &Netns) -> Result<()> {
        let Some(args) = self.netns_args.clone() else {
            bail!("restart_in is only supported for servers from start_in");
        };
        self.kill();
        let from = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = ns.spawn("etcd", &argv, &Default::default(), &self.log)?;
        if let Some(pid) = daemon.pid() {
            fs::write(self.dir.path().join(PID_FILE), pid.to_string())?;
        }
        self.process = Some(Process::Netns(daemon));
        self.wait_ready(usize::try_from(from).unwrap_or(usize::MAX))
    }

    /// Kills etcd at once (SIGKILL), as a crash would; the data directory stays until drop.
    pub fn kill(&mut self) {
        match self.process.take() {
            Some(Process::Local(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Process::Netns(mut daemon)) => daemon.kill(),
            None => {}
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts etcd on the host with its output appended to `log`.
fn spawn_local(args: &[String], log: &Path) -> Result<Child> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new("etcd")
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("starting etcd (is the etcd-server package installed?)")
}

/// Kills the etcd of every server directory whose owning test process is gone (a run that
/// was killed before its drop guards ran) and removes the directory.
pub fn remove_leftover_servers() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(owner) = fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        if Path::new(&format!("/proc/{}", owner.trim())).exists() {
            continue;
        }
        if let Ok(pid) = fs::read_to_string(dir.join(PID_FILE)) {
            let pid = pid.trim();
            // Only the etcd serving this very directory (pids get reused).
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Two distinct free TCP ports on 127.0.0.1 (both held until both are chosen).
fn free_ports() -> Result<(u16, u16)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// The etcd a test talks to: the one named by `ETCD_ENDPOINTS_FOR_TESTS`, or a private server.
pub enum TestEtcd {
    /// An etcd the run provides (shared with other tests: use unique key prefixes).
    External(Vec<String>),
    /// A server this test started; stopped on drop.
    Local(EtcdServer),
}

impl TestEtcd {
    /// Uses `ETCD_ENDPOINTS_FOR_TESTS` when set, else starts a private local server.
    pub fn from_env_or_start() -> Result<TestEtcd> {
        match std::env::var(ENDPOINTS_FOR_TESTS_ENV) {
            Ok(v) if !v.trim().is_empty() => Ok(TestEtcd::External(
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            )),
            _ => Ok(TestEtcd::Local(EtcdServer::start_local()?)),
        }
    }

    /// The client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        match self {
            TestEtcd::External(eps) => eps.clone(),
            TestEtcd::Local(server) => server.endpoints(),
        }
    }
}
