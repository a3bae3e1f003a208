//! [`DatastoreConfig`]: which datastore to use and where it is, from the environment
//! (`DATASTORE_TYPE`, `ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`,
//! `ETCD_KEY_FILE`, `CALICO_DATASTORE_PATH`) or from a calicoctl `CalicoAPIConfig` file, and
//! [`connect`] to open it.
//!
//! Precedence ([`DatastoreConfig::load`], calicoctl's rule): a config file named explicitly
//! (`--config`) must exist and is used alone; without one, `/etc/calico/calicoctl.cfg` is
//! used if it exists; otherwise the environment. A file is never merged with the environment.
//! Defaults for what neither says: `etcdv3` at `http://127.0.0.1:2379`, and for `local` the
//! file `/var/lib/calico/datastore.db`.
//!
//! ```yaml
//! apiVersion: projectcalico.org/v3
//! kind: CalicoAPIConfig
//! metadata: {}
//! spec:
//!   datastoreType: etcdv3          # or local (calico-rs's embedded store)
//!   etcdEndpoints: https://10.0.0.1:2379,https://10.0.0.2:2379
//!   etcdCACertFile: /etc/calico/ca.pem
//!   etcdCertFile: /etc/calico/cert.pem
//!   etcdKeyFile: /etc/calico/key.pem
//!   calicoDatastorePath: /var/lib/calico/datastore.db   # calico-rs extension, for `local`
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;

use crate::backend::LocalStore;
use crate::backend::local::DEFAULT_PATH as DEFAULT_LOCAL_PATH;
#[cfg(feature = "etcd")]
use crate::backend::{EtcdOptions, EtcdStore};
use crate::error::{Error, Result};
use crate::store::Datastore;

/// calicoctl's default config file, used when it exists and no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/calico/calicoctl.cfg";
/// The etcd endpoint used when none is configured.
pub const DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";

/// The backends a configuration can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatastoreType {
    /// etcd v3 (`etcdv3`), the cluster datastore.
    #[default]
    Etcdv3,
    /// The embedded single-file store (`local`), for one host.
    Local,
}

impl FromStr for DatastoreType {
    type Err = String;

    fn from_str(s: &str) -> Result<DatastoreType, String> {
        match s.trim() {
            "etcdv3" => Ok(DatastoreType::Etcdv3),
            "local" => Ok(DatastoreType::Local),
            "kubernetes" => Err(
                "'kubernetes' (the Kubernetes API datastore) is not supported by calico-rs; \
                 use etcdv3 or local"
                    .to_string(),
            ),
            other => Err(format!(
                "unknown datastore type '{other}' (expected etcdv3 or local)"
            )),
        }
    }
}

impl fmt::Display for DatastoreType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatastoreType::Etcdv3 => "etcdv3",
            DatastoreType::Local => "local",
        })
    }
}

/// Where the datastore is: owns the settings every binary (calico-node, the CNI plugins,
/// calicoctl) reads from its environment or calicoctl's config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreConfig {
    /// `DATASTORE_TYPE` / `spec.datastoreType`.
    pub datastore_type: DatastoreType,
    /// `ETCD_ENDPOINTS` / `spec.etcdEndpoints` (comma separated there).
    pub etcd_endpoints: Vec<String>,
    /// `ETCD_CA_CERT_FILE` / `spec.etcdCACertFile`.
    pub etcd_ca_cert_file: Option<PathBuf>,
    /// `ETCD_CERT_FILE` / `spec.etcdCertFile`.
    pub etcd_cert_file: Option<PathBuf>,
    /// `ETCD_KEY_FILE` / `spec.etcdKeyFile`.
    pub etcd_key_file: Option<PathBuf>,
    /// `CALICO_DATASTORE_PATH` / `spec.calicoDatastorePath`: the `local` store's file.
    pub local_path: PathBuf,
}

impl Default for DatastoreConfig {
    fn default() -> DatastoreConfig {
        DatastoreConfig {
            datastore_type: DatastoreType::Etcdv3,
            etcd_endpoints: vec![DEFAULT_ETCD_ENDPOINT.to_string()],
            etcd_ca_cert_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
            local_path: PathBuf::from(DEFAULT_LOCAL_PATH),
        }
    }
}

impl fmt::Display for DatastoreConfig {
    /// `etcdv3 (http://127.0.0.1:2379)` or `local (/var/lib/calico/datastore.db)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.datastore_type {
            DatastoreType::Etcdv3 => write!(f, "etcdv3 ({})", self.etcd_endpoints.join(",")),
            DatastoreType::Local => write!(f, "local ({})", self.local_path.display()),
        }
    }
}

/// Splits `ETCD_ENDPOINTS`-style lists.
fn endpoints(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

// ===== impl DatastoreConfig =====

impl DatastoreConfig {
    /// From the process environment (see [`from_lookup`](Self::from_lookup)).
    pub fn from_env() -> Result<DatastoreConfig> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From environment-style variables read through `lookup`; unset or empty variables
    /// take the defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<DatastoreConfig> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = DatastoreConfig::default();
        if let Some(t) = var("DATASTORE_TYPE") {
            config.datastore_type = t
                .parse()
                .map_err(|e| Error::Config(format!("DATASTORE_TYPE: {e}")))?;
        }
        if let Some(list) = var("ETCD_ENDPOINTS") {
            config.etcd_endpoints = endpoints(&list);
            if config.etcd_endpoints.is_empty() {
                return Err(Error::Config(format!(
                    "ETCD_ENDPOINTS: no endpoint in '{list}'"
                )));
            }
        }
        config.etcd_ca_cert_file = var("ETCD_CA_CERT_FILE").map(PathBuf::from);
        config.etcd_cert_file = var("ETCD_CERT_FILE").map(PathBuf::from);
        config.etcd_key_file = var("ETCD_KEY_FILE").map(PathBuf::from);
        if let Some(path) = var("CALICO_DATASTORE_PATH") {
            config.local_path = PathBuf::from(path);
        }
        Ok(config)
    }

    /// From a calicoctl config file.
    pub fn from_calicoctl_file(path: &Path) -> Result<DatastoreConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::from_calicoctl_yaml(&text)
            .map_err(|e| Error::Config(format!("config file {}: {}", path.display(), inner(e))))
    }

    /// From the text of a `CalicoAPIConfig` (YAML or JSON).
    pub fn from_calicoctl_yaml(text: &str) -> Result<DatastoreConfig> {
        let file: ApiConfigFile =
            serde_yaml_ng::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        if file.kind != "CalicoAPIConfig" {
            return Err(Error::Config(format!(
                "kind: expected 'CalicoAPIConfig', got '{}'",
                file.kind
            )));
        }
        if file.api_version != "projectcalico.org/v3" {
            return Err(Error::Config(format!(
                "apiVersion: expected 'projectcalico.org/v3', got '{}'",
                file.api_version
            )));
        }
        file.spec.into_config()
    }

    /// calicoctl's rule: an explicitly given file (`--config`) must exist and is used; else
    /// [`DEFAULT_CONFIG_FILE`] if it exists; else the environment.
    pub fn load(config_file: Option<&Path>) -> Result<DatastoreConfig> {
        match config_file {
            Some(path) => Self::from_calicoctl_file(path),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Self::from_calicoctl_file(Path::new(DEFAULT_CONFIG_FILE))
            }
            None => Self::from_env(),
        }
    }

    /// The etcd connection settings (default timeouts).
    #[cfg(feature = "etcd")]
    pub fn etcd_options(&self) -> EtcdOptions {
        EtcdOptions {
            ca_cert_file: self.etcd_ca_cert_file.clone(),
            cert_file: self.etcd_cert_file.clone(),
            key_file: self.etcd_key_file.clone(),
            ..EtcdOptions::new(self.etcd_endpoints.clone())
        }
    }
}

/// The message of a config error, without the "datastore configuration:" prefix.
fn inner(e: Error) -> String {
    match e {
        Error::Config(msg) => msg,
        other => other.to_string(),
    }
}

/// Opens the configured datastore: connects to etcd (checking it answers) or opens the
/// local file (creating it).
pub async fn connect(config: &DatastoreConfig) -> Result<Arc<dyn Datastore>> {
    match config.datastore_type {
        #[cfg(feature = "etcd")]
        DatastoreType::Etcdv3 => Ok(Arc::new(EtcdStore::connect(config.etcd_options()).await?)),
        #[cfg(not(feature = "etcd"))]
        DatastoreType::Etcdv3 => Err(Error::Config(
            "datastoreType: etcdv3 needs the datastore crate's etcd feature (built without it)"
                .into(),
        )),
        DatastoreType::Local => {
            let path = config.local_path.clone();
            let store = tokio::task::spawn_blocking(move || LocalStore::open(path))
                .await
                .map_err(|e| Error::Backend(format!("opening the local datastore: {e}")))??;
            Ok(Arc::new(store))
        }
    }
}

// ===== the CalicoAPIConfig file =====

/// A calicoctl config file. Unknown fields are refused (a typo would otherwise silently fall
/// back to a default); every field Calico defines is known.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    spec: ApiConfigSpec,
}

/// `CalicoAPIConfigSpec` (libcalico-go `apiconfig`), plus `calicoDatastorePath`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiConfigSpec {
    datastore_type: Option<String>,
    etcd_endpoints: Option<String>,
    etcd_key_file: Option<PathBuf>,
    etcd_cert_file: Option<PathBuf>,
    #[serde(rename = "etcdCACertFile")]
    etcd_ca_cert_file: Option<PathBuf>,
    calico_datastore_path: Option<PathBuf>,
    // Calico fields calico-rs does not implement: refused when set.
    etcd_discovery_srv: Option<String>,
    etcd_username: Option<String>,
    etcd_password: Option<String>,
    etcd_key: Option<String>,
    etcd_cert: Option<String>,
    #[serde(rename = "etcdCACert")]
    etcd_ca_cert: Option<String>,
    // Kubernetes datastore fields: ignored (that datastore type is refused).
    #[serde(rename = "kubeconfig")]
    _kubeconfig: Option<serde_yaml_ng::Value>,
    #[serde(rename = "kubeconfigInline")]
    _kubeconfig_inline: Option<serde_yaml_ng::Value>,
    #[serde(rename = "k8sAPIEndpoint")]
    _k8s_api_endpoint: Option<serde_yaml_ng::Value>,
    #[serde(rename = "k8sKeyFile")]
    _k8s_key_file: Option<serde_yaml_ng::Value>,
    #[serde(rename = "k8sCertFile")]
    _k8s_cert_file: Option<serde_yaml_ng::Value>,
    #[serde(rename = "k8sCAFile")]
    _k8s_ca_file: Option<serde_yaml_ng::Value>,
    #[serde(rename = "k8sAPIToken")]
    _k8s_api_token: Option<serde_yaml_ng::Value>,
    #[serde(rename = "k8sInsecureSkipTLSVerify")]
    _k8s_insecure_skip_tls_verify: Option<serde_yaml_ng::Value>,
    #[serde(rename = "k8sDisableNodePoll")]
    _k8s_disable_node_poll: Option<serde_yaml_ng::Value>,
    #[serde(rename = "k8sClientQPS")]
    _k8s_client_qps: Option<serde_yaml_ng::Value>,
}

impl ApiConfigSpec {
    fn into_config(self) -> Result<DatastoreConfig> {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        for (field, value, instead) in [
            (
                "etcdDiscoverySrv",
                &self.etcd_discovery_srv,
                "list etcdEndpoints",
            ),
            (
                "etcdUsername",
                &self.etcd_username,
                "use client certificates",
            ),
            (
                "etcdPassword",
                &self.etcd_password,
                "use client certificates",
            ),
            ("etcdKey", &self.etcd_key, "use etcdKeyFile"),
            ("etcdCert", &self.etcd_cert, "use etcdCertFile"),
            ("etcdCACert", &self.etcd_ca_cert, "use etcdCACertFile"),
        ] {
            if set(value) {
                return Err(Error::Config(format!(
                    "spec.{field} is not supported by calico-rs; {instead}"
                )));
            }
        }
        let mut config = DatastoreConfig::default();
        if let Some(t) = self
            .datastore_type
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        {
            config.datastore_type = t
                .parse()
                .map_err(|e| Error::Config(format!("spec.datastoreType: {e}")))?;
        }
        if let Some(list) = self
            .etcd_endpoints
            .as_deref()
            .filter(|l| !l.trim().is_empty())
        {
            config.etcd_endpoints = endpoints(list);
            if config.etcd_endpoints.is_empty() {
                return Err(Error::Config(format!(
                    "spec.etcdEndpoints: no endpoint in '{list}'"
                )));
            }
        }
        let path = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        config.etcd_ca_cert_file = path(self.etcd_ca_cert_file);
        config.etcd_cert_file = path(self.etcd_cert_file);
        config.etcd_key_file = path(self.etcd_key_file);
        if let Some(p) = path(self.calico_datastore_path) {
            config.local_path = p;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<DatastoreConfig> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DatastoreConfig::from_lookup(|name| map.get(name).cloned())
    }

    fn config_error(r: Result<DatastoreConfig>) -> String {
        match r {
            Err(Error::Config(msg)) => msg,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn empty_environment_means_local_etcd() {
        let c = env(&[]).expect("config");
        assert_eq!(c, DatastoreConfig::default());
        assert_eq!(c.to_string(), "etcdv3 (http://127.0.0.1:2379)");
    }

    #[test]
    fn environment_sets_every_field() {
        let c = env(&[
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", "https://a:2379, https://b:2379,"),
            ("ETCD_CA_CERT_FILE", "/ca.pem"),
            ("ETCD_CERT_FILE", "/cert.pem"),
            ("ETCD_KEY_FILE", "/key.pem"),
            ("CALICO_DATASTORE_PATH", "/tmp/ds.db"),
        ])
        .expect("config");
        assert_eq!(c.etcd_endpoints, ["https://a:2379", "https://b:2379"]);
        assert_eq!(c.etcd_ca_cert_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(c.etcd_cert_file.as_deref(), Some(Path::new("/cert.pem")));
        assert_eq!(c.etcd_key_file.as_deref(), Some(Path::new("/key.pem")));
        assert_eq!(c.local_path, Path::new("/tmp/ds.db"));
        let opts = c.etcd_options();
        assert!(opts.uses_tls());
        let local = env(&[("DATASTORE_TYPE", "local")]).expect("config");
        assert_eq!(local.to_string(), "local (/var/lib/calico/datastore.db)");
    }

    #[test]
    fn bad_environment_names_the_variable() {
        let msg = config_error(env(&[("DATASTORE_TYPE", "kubernetes")]));
        assert!(
            msg.starts_with("DATASTORE_TYPE:") && msg.contains("not supported"),
            "{msg}"
        );
        let msg = config_error(env(&[("DATASTORE_TYPE", "consul")]));
        assert!(
            msg.starts_with("DATASTORE_TYPE:") && msg.contains("consul"),
            "{msg}"
        );
        let msg = config_error(env(&[("ETCD_ENDPOINTS", " , ")]));
        assert!(msg.starts_with("ETCD_ENDPOINTS:"), "{msg}");
    }

    #[test]
    fn calicoctl_file_is_read() {
        let c = DatastoreConfig::from_calicoctl_yaml(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  \
             datastoreType: etcdv3\n  etcdEndpoints: https://10.0.0.1:2379,https://10.0.0.2:2379\n  \
             etcdKeyFile: /k.pem\n  etcdCertFile: /c.pem\n  etcdCACertFile: /ca.pem\n",
        )
        .expect("config");
        assert_eq!(
            c.etcd_endpoints,
            ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
        );
        assert_eq!(c.etcd_ca_cert_file.as_deref(), Some(Path::new("/ca.pem")));
        let local = DatastoreConfig::from_calicoctl_yaml(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  \
             datastoreType: local\n  calicoDatastorePath: /srv/ds.db\n",
        )
        .expect("config");
        assert_eq!(
            (local.datastore_type, local.local_path.as_path()),
            (DatastoreType::Local, Path::new("/srv/ds.db"))
        );
        // Nothing but the header: Calico's defaults.
        let bare = DatastoreConfig::from_calicoctl_yaml(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\n",
        )
        .expect("config");
        assert_eq!(bare, DatastoreConfig::default());
    }

    #[test]
    fn bad_calicoctl_file_names_the_field() {
        let header = "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\n";
        let msg = config_error(DatastoreConfig::from_calicoctl_yaml(&format!(
            "{header}spec:\n  etcdEndpoint: http://x:2379\n"
        )));
        assert!(msg.contains("etcdEndpoint"), "{msg}");
        let msg = config_error(DatastoreConfig::from_calicoctl_yaml(&format!(
            "{header}spec:\n  datastoreType: kubernetes\n  kubeconfig: /root/.kube/config\n"
        )));
        assert!(
            msg.starts_with("spec.datastoreType:") && msg.contains("not supported"),
            "{msg}"
        );
        let msg = config_error(DatastoreConfig::from_calicoctl_yaml(&format!(
            "{header}spec:\n  etcdUsername: root\n"
        )));
        assert!(msg.starts_with("spec.etcdUsername"), "{msg}");
        let msg = config_error(DatastoreConfig::from_calicoctl_yaml(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\n",
        ));
        assert!(msg.starts_with("kind:") && msg.contains("IPPool"), "{msg}");
        let msg = config_error(DatastoreConfig::from_calicoctl_yaml(
            "apiVersion: v1\nkind: CalicoAPIConfig\n",
        ));
        assert!(msg.starts_with("apiVersion:"), "{msg}");
        let msg = config_error(DatastoreConfig::from_calicoctl_yaml("spec: [unclosed"));
        assert!(!msg.is_empty());
    }

    #[test]
    fn an_explicit_config_file_must_exist() {
        let msg = config_error(DatastoreConfig::load(Some(Path::new(
            "/nonexistent/calicoctl.cfg",
        ))));
        assert!(msg.contains("/nonexistent/calicoctl.cfg"), "{msg}");
    }

    #[test]
    fn a_config_file_wins_over_the_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("calicoctl.cfg");
        std::fs::write(
            &path,
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  \
             datastoreType: local\n  calicoDatastorePath: /srv/ds.db\n",
        )
        .expect("write config");
        // The process environment is not consulted when a file is given.
        let c = DatastoreConfig::load(Some(&path)).expect("config");
        assert_eq!(c.datastore_type, DatastoreType::Local);
        let msg = config_error(DatastoreConfig::from_calicoctl_file(&dir.path().join("x")));
        assert!(msg.starts_with("cannot read config file"), "{msg}");
    }

    #[tokio::test]
    async fn connect_opens_a_local_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = DatastoreConfig {
            datastore_type: DatastoreType::Local,
            local_path: dir.path().join("a/b/datastore.db"),
            ..DatastoreConfig::default()
        };
        let store = connect(&config).await.expect("connect");
        let rev = store
            .create("/k", b"v".to_vec(), None)
            .await
            .expect("create");
        assert_eq!(store.revision().await.expect("revision"), rev);
        assert!(config.local_path.exists());
    }
}
