//! A one-node CNI lab: a node namespace (with the default route a real host has), etcd
//! serving inside it on 127.0.0.1, the plugin binaries in a temp CNI_PATH, and access to
//! IPAM and the endpoints from inside the node. Everything is removed on drop.

#![allow(dead_code)]

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::{Context, Result};
use datastore::Datastore;
use datastore::model::{IPPool, IPPoolSpec};
use lab::Netns;
use lab::cni::{CalicoConf, Call, CniBin, CniOutput, Store};
use lab::etcd::EtcdServer;

/// Which datastore the lab's plugins use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A real etcd (the default).
    Etcd,
    /// The embedded SQLite store in a temp file (`CNI_E2E_STORE=local`).
    Local,
}

impl Backend {
    /// `CNI_E2E_STORE=local` selects the embedded store, else etcd.
    pub fn from_env() -> Backend {
        match std::env::var("CNI_E2E_STORE").as_deref() {
            Ok("local") => Backend::Local,
            _ => Backend::Etcd,
        }
    }
}

/// The lab. Field order is drop order: etcd (inside the node) before the node.
pub struct CniLab {
    pub etcd: Option<EtcdServer>,
    pub node: Netns,
    pub bin: CniBin,
    pub store: Store,
    pub dir: tempfile::TempDir,
}

impl CniLab {
    /// Builds the lab; `short` keeps namespace names unique per test.
    pub fn new(short: &str) -> Result<CniLab> {
        lab::remove_leftovers();
        let node = Netns::create(short)?;
        lab::cni::add_default_route(&node)?;
        node.sh("sysctl -qw net.ipv4.ip_forward=1")?;
        let dir = tempfile::Builder::new().prefix("crs-cni-lab").tempdir()?;
        let (etcd, store) = match Backend::from_env() {
            Backend::Etcd => {
                let etcd = EtcdServer::start_in(&node, Ipv4Addr::LOCALHOST.into())?;
                let endpoint = etcd.endpoint().to_string();
                (Some(etcd), Store::Etcd(endpoint))
            }
            Backend::Local => (None, Store::Local(dir.path().join("datastore.db"))),
        };
        let bin = CniBin::calico(
            env!("CARGO_BIN_EXE_calico").as_ref(),
            env!("CARGO_BIN_EXE_calico-ipam").as_ref(),
        )?;
        Ok(CniLab {
            etcd,
            node,
            bin,
            store,
            dir,
        })
    }

    /// The CNI config for `node_name` on this lab's datastore.
    pub fn conf(&self, node_name: &str) -> CalicoConf {
        let mut conf = CalicoConf::new(node_name, self.store.clone());
        conf.ipam_lock_file = Some(self.dir.path().join(format!("ipam-{node_name}.lock")));
        conf
    }

    /// Runs `f` with a datastore connection, from inside the node namespace (where etcd
    /// listens).
    pub fn with_store<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Datastore>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>>,
    {
        let conf_json = self.conf("inspector").json();
        let file = cni::netns::open(&self.node.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = std::sync::mpsc::channel();
        rt.block_on(cni::netns::run_in(file, move || async move {
            let conf = cni::config::NetConf::parse(conf_json.as_bytes())?;
            let store = cni::store::connect(&conf).await?;
            let _ = tx.send(f(store).await);
            Ok(())
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        rx.recv().context("the inspector thread died")?
    }

    /// IPAM over the lab's datastore, inside the node.
    pub fn with_ipam<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(ipam::Ipam) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>>,
    {
        self.with_store(move |ds| f(ipam::Ipam::new(ds)))
    }

    /// Creates an IP pool.
    pub fn add_pool(&self, name: &str, cidr: &str, block_size: u8) -> Result<()> {
        let (name, cidr) = (name.to_string(), cidr.to_string());
        self.with_store(move |ds| async move {
            let mut spec = IPPoolSpec::with_cidr(cidr);
            spec.block_size = block_size;
            datastore::Client::new(ds)
                .create(IPPool::new(name, spec))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        })
    }

    /// Runs `plugin` for `command` inside the node.
    pub fn call(&self, conf: &str, call: &Call<'_>) -> Result<CniOutput> {
        lab::cni::run(&self.node, &self.bin, conf, call)
    }

    /// ADDs `pod` as container `id` on `node_name`; returns the address.
    pub fn add(&self, node_name: &str, pod: &Netns, id: &str) -> Result<Ipv4Addr> {
        lab::cni::add_pod(&self.node, &self.bin, &self.conf(node_name), pod, id)
    }

    /// DELs container `id`.
    pub fn del(&self, node_name: &str, pod: Option<&Netns>, id: &str) -> Result<()> {
        lab::cni::del_pod(&self.node, &self.bin, &self.conf(node_name), pod, id)
    }

    /// The names of the cali interfaces in the node.
    pub fn cali_links(&self) -> Result<Vec<String>> {
        let out = self.node.ip(&["-o", "link", "show"])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("cali"))
            .collect())
    }
}
