//! Runs the real `calicoctl` binary against an embedded `local` store in a temp dir.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

/// What one calicoctl run printed and returned.
#[derive(Debug)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// A private datastore and the way to run calicoctl against it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs calicoctl with `args`, feeding `stdin` when given.
    pub fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut child = Command::new(env!("CARGO_BIN_EXE_calicoctl"))
            .args(args)
            .env("DATASTORE_TYPE", "local")
            .env("CALICO_DATASTORE_PATH", self.dir.path().join("db"))
            .env_remove("ETCD_ENDPOINTS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(pipe);
        let out = child.wait_with_output().unwrap();
        Out {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, None)
    }

    /// `calicoctl <verb> -f -` with `yaml` on stdin.
    pub fn stdin(&self, verb: &str, yaml: &str) -> Out {
        self.run_with(&[verb, "-f", "-"], Some(yaml))
    }

    /// Applies `yaml` and asserts success.
    pub fn apply_ok(&self, yaml: &str) {
        let out = self.stdin("apply", yaml);
        assert_eq!(out.code, 0, "apply failed: {out:?}");
    }

    /// Everything in the store, as calicoctl shows it (with resourceVersions).
    pub fn snapshot(&self) -> String {
        let mut s = String::new();
        for kind in [
            "ippools",
            "nodes",
            "bgppeers",
            "bgpconfigs",
            "felixconfigs",
            "ipamconfigs",
            "clusterinformations",
        ] {
            let out = self.run(&["get", kind, "-o", "yaml"]);
            assert_eq!(out.code, 0, "{out:?}");
            s.push_str(&out.stdout);
        }
        let out = self.run(&["get", "weps", "-A", "-o", "yaml"]);
        s.push_str(&out.stdout);
        s
    }
}

/// A v3 document with `kind`, `name` and a flow-style `spec`.
pub fn doc(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata:\n  name: {name}\nspec: {spec}\n"
    )
}
