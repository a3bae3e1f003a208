//! The lab in flannel mode: flannel's network config in etcd, calico-node with
//! `CALICO_NETWORKING_BACKEND=flannel` and a subnet file per node, pods through the same
//! Calico CNI config plus the keys that point calico-ipam at that node's subnet file, and
//! `etcdctl` inside the control namespace.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{Cluster, Pod};
use crate::cni::{Call, run};
use crate::netns::Netns;

/// flannel's default etcd prefix.
pub const FLANNEL_PREFIX: &str = "/coreos.com/network";

/// One lease as `etcdctl get` shows it.
#[derive(Debug, Clone)]
pub struct FlannelLease {
    /// `10.244.1.0/24`.
    pub subnet: String,
    /// The stored JSON, as text.
    pub raw: String,
    pub value: Value,
}

impl FlannelLease {
    /// `PublicIP`.
    pub fn public_ip(&self) -> &str {
        self.value["PublicIP"].as_str().unwrap_or_default()
    }

    /// `BackendData.VtepMAC` (vxlan).
    pub fn vtep_mac(&self) -> &str {
        self.value["BackendData"]["VtepMAC"]
            .as_str()
            .unwrap_or_default()
    }
}

impl Cluster {
    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.nodes[i].name)
    }

    /// Node `i`'s `FLANNELD_SUBNET_FILE`.
    pub fn flannel_subnet_file(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("flannel/subnet.env")
    }

    /// Node `i`'s subnet.env, once written.
    pub fn flannel_subnet_env(&self, i: usize) -> Option<String> {
        std::fs::read_to_string(self.flannel_subnet_file(i)).ok()
    }

    /// The environment that makes node `i`'s calico-node run the flannel backend.
    pub fn flannel_env(&self, i: usize) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "CALICO_NETWORKING_BACKEND".to_string(),
                "flannel".to_string(),
            ),
            (
                "FLANNELD_SUBNET_FILE".to_string(),
                self.flannel_subnet_file(i).display().to_string(),
            ),
        ])
    }

    /// Starts calico-node on node `i` in flannel mode, with `extra` environment on top.
    pub fn start_flannel_agent(
        &mut self,
        i: usize,
        extra: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut env = self.flannel_env(i);
        env.extend(extra.clone());
        self.start_agent_with(i, &env)
    }

    /// Runs `etcdctl args` in the control namespace against the lab's etcd; its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let endpoint = self.etcd_endpoint();
        let mut argv = vec!["--endpoints", endpoint.as_str()];
        argv.extend_from_slice(args);
        let out = self.ctl.exec("etcdctl", &argv)?;
        if !out.status.success() {
            bail!(
                "etcdctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `etcdctl put /coreos.com/network/config '<json>'`, as a flannel user does.
    pub fn put_flannel_config(&self, json: &str) -> Result<()> {
        self.etcdctl(&["put", &format!("{FLANNEL_PREFIX}/config"), json])
            .map(|_| ())
    }

    /// Every lease under `/coreos.com/network/subnets/`, from `etcdctl get --prefix`.
    pub fn flannel_leases(&self) -> Result<Vec<FlannelLease>> {
        let out = self.etcdctl(&["get", "--prefix", &format!("{FLANNEL_PREFIX}/subnets/")])?;
        let lines: Vec<&str> = out.lines().collect();
        let mut leases = Vec::new();
        for pair in lines.chunks(2) {
            let [key, raw] = pair else {
                bail!("odd etcdctl output: {out}");
            };
            let name = key
                .rsplit('/')
                .next()
                .with_context(|| format!("lease key {key}"))?;
            let subnet = name.replacen('-', "/", 1);
            let value: Value =
                serde_json::from_str(raw).with_context(|| format!("lease value {raw}"))?;
            leases.push(FlannelLease {
                subnet,
                raw: raw.to_string(),
                value,
            });
        }
        Ok(leases)
    }

    /// The lease whose `PublicIP` is node `i`'s address.
    pub fn flannel_lease_of(&self, i: usize) -> Result<Option<FlannelLease>> {
        let ip = self.nodes[i].ip().to_string();
        Ok(self
            .flannel_leases()?
            .into_iter()
            .find(|l| l.public_ip() == ip))
    }

    /// Node `i`'s CNI config in flannel mode: the usual Calico config plus
    /// `flannel_subnet_file` and `flannel_data_dir` for this node.
    pub fn flannel_cni_json(&self, i: usize) -> Result<String> {
        let mut v: Value = serde_json::from_str(&self.cni_conf(i).json())?;
        v["flannel_subnet_file"] = json!(self.flannel_subnet_file(i));
        v["flannel_data_dir"] = json!(self.node_dir(i).join("cni-networks"));
        Ok(v.to_string())
    }

    /// Creates pod `name` on node `i` through CNI ADD in flannel mode.
    pub fn add_flannel_pod(&mut self, i: usize, name: &str) -> Result<usize> {
        let ns = Netns::create(&format!("p-{name}"))?;
        let container_id = format!("{name}-{}", std::process::id());
        let conf = self.flannel_cni_json(i)?;
        let path = ns.path();
        let out = run(
            &self.nodes[i].ns,
            &self.cni,
            &conf,
            &Call {
                plugin: "calico",
                command: "ADD",
                container_id: &container_id,
                netns: Some(&path),
                ifname: "eth0",
                args: "",
            },
        )?;
        if !out.success() {
            bail!(
                "CNI ADD of {name} on {} failed: {}{}",
                self.nodes[i].name,
                out.stdout.trim(),
                out.stderr.trim()
            );
        }
        let ip = out.ip()?;
        self.pods.push(Pod {
            name: name.to_string(),
            node: i,
            ip,
            ip6: None,
            container_id,
            ns,
        });
        Ok(self.pods.len() - 1)
    }

    /// Deletes pod `p` through CNI DEL in flannel mode and removes its namespace.
    pub fn delete_flannel_pod(&mut self, p: usize) -> Result<()> {
        let pod = self.pods.remove(p);
        let conf = self.flannel_cni_json(pod.node)?;
        let path = pod.ns.path();
        let out = run(
            &self.nodes[pod.node].ns,
            &self.cni,
            &conf,
            &Call {
                plugin: "calico",
                command: "DEL",
                container_id: &pod.container_id,
                netns: Some(&path),
                ifname: "eth0",
                args: "",
            },
        )?;
        if !out.success() {
            bail!(
                "CNI DEL of {} failed: {}{}",
                pod.name,
                out.stdout.trim(),
                out.stderr.trim()
            );
        }
        Ok(())
    }
}
