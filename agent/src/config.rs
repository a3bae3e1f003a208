//! calico-node's settings: Calico's environment variables, each also a flag.

use std::path::PathBuf;

use clap::Parser;
use datastore::model::EncapMode;

/// calico-node: Calico-compatible node agent (dataplane, embedded BGP, flannel backend).
#[derive(Debug, Clone, Parser)]
#[command(name = "calico-node", version)]
pub struct NodeConfig {
    /// This node's name (defaults to the hostname).
    #[arg(long, env = "NODENAME")]
    pub nodename: Option<String>,

    /// Node IPv4 address with prefix length (`10.0.0.1/24`), `autodetect`, or `none` (an
    /// IPv6-only node; the Node's stored ipv4Address is kept).
    #[arg(long, env = "IP", default_value = "autodetect")]
    pub ip: String,

    /// `first-found`, `interface=<regex>`, `can-reach=<ip>` or `cidr=<cidr>[,<cidr>...]`.
    #[arg(long, env = "IP_AUTODETECTION_METHOD", default_value = "first-found")]
    pub ip_autodetection_method: String,

    /// Node IPv6 address with prefix length (`fd00:1::9/64`), `autodetect`, or `none` /
    /// unset: the Node's stored `spec.bgp.ipv6Address` if it has one, else no IPv6 (as
    /// calico-node).
    #[arg(long, env = "IP6", default_value = "")]
    pub ip6: String,

    /// IPv6 auto-detection, the same methods as `IP_AUTODETECTION_METHOD`.
    #[arg(long, env = "IP6_AUTODETECTION_METHOD", default_value = "first-found")]
    pub ip6_autodetection_method: String,

    /// `false` turns IPv6 off whatever `IP6` says (Felix's `ipv6Support`).
    #[arg(long, env = "FELIX_IPV6SUPPORT", default_value = "true")]
    pub ipv6_support: String,

    /// This node's AS number (plain or dotted); the cluster default when unset.
    #[arg(long = "as", env = "AS")]
    pub as_number: Option<String>,

    /// `etcdv3` or `local`.
    #[arg(long, env = "DATASTORE_TYPE", default_value = "etcdv3")]
    pub datastore_type: String,

    /// etcd endpoints, comma separated.
    #[arg(long, env = "ETCD_ENDPOINTS", default_value = "http://127.0.0.1:2379")]
    pub etcd_endpoints: String,

    /// CA certificate for etcd TLS.
    #[arg(long, env = "ETCD_CA_CERT_FILE")]
    pub etcd_ca_cert_file: Option<String>,

    /// Client certificate for etcd TLS.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<String>,

    /// Client key for etcd TLS.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub etcd_key_file: Option<String>,

    /// The embedded store's file (`DATASTORE_TYPE=local`).
    #[arg(
        long,
        env = "CALICO_DATASTORE_PATH",
        default_value = "/var/lib/calico/datastore.db"
    )]
    pub datastore_path: String,

    /// `bird` (BGP, the default), `vxlan`, `none` or `flannel`.
    #[arg(long, env = "CALICO_NETWORKING_BACKEND", default_value = "bird")]
    pub networking_backend: String,

    /// CIDR of the default pool created at first start.
    #[arg(long, env = "CALICO_IPV4POOL_CIDR", default_value = "192.168.0.0/16")]
    pub ipv4pool_cidr: String,

    /// Block size of the default pool.
    #[arg(long, env = "CALICO_IPV4POOL_BLOCK_SIZE", default_value_t = 26)]
    pub ipv4pool_block_size: u8,

    /// ipipMode of the default pool (`Always`, `CrossSubnet`, `Never`).
    #[arg(long, env = "CALICO_IPV4POOL_IPIP", default_value = "Never")]
    pub ipv4pool_ipip: String,

    /// vxlanMode of the default pool (`Always`, `CrossSubnet`, `Never`).
    #[arg(long, env = "CALICO_IPV4POOL_VXLAN", default_value = "Never")]
    pub ipv4pool_vxlan: String,

    /// natOutgoing of the default pool.
    #[arg(long, env = "CALICO_IPV4POOL_NAT_OUTGOING", default_value = "true")]
    pub ipv4pool_nat_outgoing: String,

    /// nodeSelector of the default pool.
    #[arg(long, env = "CALICO_IPV4POOL_NODE_SELECTOR", default_value = "all()")]
    pub ipv4pool_node_selector: String,

    /// CIDR of the default IPv6 pool, created when this node has IPv6 and no IPv6 pool
    /// exists; unset: a random ULA /48 (as calico-node); `none`: no IPv6 pool.
    #[arg(long, env = "CALICO_IPV6POOL_CIDR", default_value = "")]
    pub ipv6pool_cidr: String,

    /// Block size of the default IPv6 pool.
    #[arg(long, env = "CALICO_IPV6POOL_BLOCK_SIZE", default_value_t = 122)]
    pub ipv6pool_block_size: u8,

    /// vxlanMode of the default IPv6 pool (only `Never` for now: no vxlan-v6.calico yet).
    #[arg(long, env = "CALICO_IPV6POOL_VXLAN", default_value = "Never")]
    pub ipv6pool_vxlan: String,

    /// natOutgoing of the default IPv6 pool.
    #[arg(long, env = "CALICO_IPV6POOL_NAT_OUTGOING", default_value = "false")]
    pub ipv6pool_nat_outgoing: String,

    /// nodeSelector of the default IPv6 pool.
    #[arg(long, env = "CALICO_IPV6POOL_NODE_SELECTOR", default_value = "all()")]
    pub ipv6pool_node_selector: String,

    /// Do not create the default pools.
    #[arg(long, env = "NO_DEFAULT_POOLS", default_value = "false")]
    pub no_default_pools: String,

    /// Where the local status socket lives (one per node on a shared test machine).
    #[arg(long, env = "CALICO_RUN_DIR", default_value = "/var/run/calico")]
    pub run_dir: PathBuf,

    /// Where the pod MTU is written for the CNI plugin.
    #[arg(long, env = "CALICO_MTU_FILE", default_value = "/var/lib/calico/mtu")]
    pub mtu_file: PathBuf,

    /// Directory holding BGP passwords as `<secret name>/<key>` files (Calico reads them
    /// from Kubernetes secrets).
    #[arg(
        long,
        env = "CALICO_SECRETS_DIR",
        default_value = "/etc/calico/secrets"
    )]
    pub secrets_dir: PathBuf,

    /// Health endpoint port (`/liveness`, `/readiness`); 0 disables.
    #[arg(long, env = "FELIX_HEALTHPORT", default_value_t = 9099)]
    pub health_port: u16,

    /// Health endpoint address.
    #[arg(long, env = "FELIX_HEALTHHOST", default_value = "127.0.0.1")]
    pub health_host: String,

    /// Prometheus metrics port (`/metrics`); 0 disables.
    #[arg(long, env = "FELIX_PROMETHEUSMETRICSPORT", default_value_t = 9091)]
    pub metrics_port: u16,

    /// Seconds between full dataplane resyncs (drift is also repaired on kernel events).
    #[arg(long, env = "FELIX_ROUTEREFRESHINTERVAL", default_value_t = 90)]
    pub route_refresh_interval: u64,

    /// Seconds a block of this node must stay empty before it is released (never the
    /// node's last block).
    #[arg(long, env = "CALICO_IPAM_EMPTY_BLOCK_GRACE", default_value_t = 300)]
    pub empty_block_grace: u64,

    /// BGP router ID: `hash` (from the node name, as Calico), an IPv4 address, or unset for
    /// the node's IPv4 address.
    #[arg(long, env = "CALICO_ROUTER_ID")]
    pub router_id: Option<String>,

    /// The cluster type recorded in ClusterInformation (`calicoctl version` shows it).
    #[arg(long, env = "CLUSTER_TYPE", default_value = "calico-rs,bgp")]
    pub cluster_type: String,

    /// Most routes accepted from one BGP peer (BIRD's `import limit`); 0 = no limit. A
    /// misconfigured router sending a full table must not take the node down.
    #[arg(long, env = "CALICO_RS_BGP_IMPORT_LIMIT", default_value_t = 100_000)]
    pub bgp_import_limit: u64,

    /// What happens at the import limit: `block` (keep the session, refuse further
    /// routes), `warn`, `restart` or `disable` (BIRD's actions).
    #[arg(
        long,
        env = "CALICO_RS_BGP_IMPORT_LIMIT_ACTION",
        default_value = "block"
    )]
    pub bgp_import_limit_action: String,

    /// Seconds a task of calico-node may go without progress before it counts as stuck:
    /// `/liveness` then fails and `calicoctl node status` names it.
    #[arg(long, env = "CALICO_RS_TASK_STUCK_TIMEOUT", default_value_t = 30)]
    pub task_stuck_timeout: u64,

    /// Test hook: `<task>=<panic|exit|hang>@<delay>;...` injects that fault into the named
    /// task (see `tasks::supervisor`). Unset in production.
    #[arg(long, env = "CALICO_RS_FAILPOINTS", hide = true)]
    pub failpoints: Option<String>,

    /// Seconds an allocation in one of this node's blocks may go unused by any endpoint
    /// or node before it is released as leaked (Calico's kube-controllers use 15 minutes);
    /// 0 turns the collection off.
    #[arg(long, env = "CALICO_IPAM_LEAK_GRACE", default_value_t = 900)]
    pub ipam_leak_grace: u64,

    /// Log level (`info`, `debug`, ...); `CALICO_LOG_LEVEL` or RUST_LOG.
    #[arg(long, env = "CALICO_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Flannel backend: etcd prefix of the network config and leases.
    #[arg(
        long = "etcd-prefix",
        alias = "flannel-etcd-prefix",
        env = "FLANNELD_ETCD_PREFIX",
        default_value = "/coreos.com/network"
    )]
    pub flannel_etcd_prefix: String,

    /// Flannel backend: where subnet.env is written.
    #[arg(
        long = "subnet-file",
        alias = "flannel-subnet-file",
        env = "FLANNELD_SUBNET_FILE",
        default_value = "/run/flannel/subnet.env"
    )]
    pub flannel_subnet_file: PathBuf,

    /// Flannel backend: the interface to use (defaults to the node address's).
    #[arg(long = "iface", alias = "flannel-iface", env = "FLANNELD_IFACE")]
    pub flannel_iface: Option<String>,

    /// Flannel backend: masquerade traffic leaving the flannel network.
    #[arg(
        long = "ip-masq",
        alias = "flannel-ip-masq",
        env = "FLANNELD_IP_MASQ",
        default_value = "false"
    )]
    pub flannel_ip_masq: String,

    /// Flannel backend: seconds a subnet lease lives unrenewed (flannel: 24 h; shorter
    /// values are for tests).
    #[arg(
        long = "subnet-lease-ttl",
        env = "FLANNELD_SUBNET_LEASE_TTL",
        default_value_t = 86400
    )]
    pub flannel_subnet_lease_ttl: u64,

    /// Flannel backend: minutes before expiry the lease is renewed (flannel's flag; a third
    /// of the TTL when the TTL is shorter).
    #[arg(
        long = "subnet-lease-renew-margin",
        env = "FLANNELD_SUBNET_LEASE_RENEW_MARGIN",
        default_value_t = 60
    )]
    pub flannel_subnet_lease_renew_margin: u64,
}

impl NodeConfig {
    /// The datastore settings, from these flags (each defaulting to its variable).
    pub fn datastore(&self) -> datastore::Result<datastore::config::DatastoreConfig> {
        datastore::config::DatastoreConfig::from_lookup(|name| match name {
            "DATASTORE_TYPE" => Some(self.datastore_type.clone()),
            "ETCD_ENDPOINTS" => Some(self.etcd_endpoints.clone()),
            "ETCD_CA_CERT_FILE" => self.etcd_ca_cert_file.clone(),
            "ETCD_CERT_FILE" => self.etcd_cert_file.clone(),
            "ETCD_KEY_FILE" => self.etcd_key_file.clone(),
            "CALICO_DATASTORE_PATH" => Some(self.datastore_path.clone()),
            _ => None,
        })
    }
}

/// Parses Calico's boolean spellings (`true`, `false`, `1`, `0`, `yes`, `no`).
pub fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        other => Err(format!(
            "{name}: '{other}' is not a boolean (true or false)"
        )),
    }
}

/// The BGP import limit from its two settings (`None` when the limit is 0).
pub fn import_limit(max: u64, action: &str) -> Result<Option<bgp::config::ImportLimit>, String> {
    use bgp::config::LimitAction;
    let action = match action.trim() {
        "block" => LimitAction::Block,
        "warn" => LimitAction::Warn,
        "restart" => LimitAction::Restart,
        "disable" => LimitAction::Disable,
        other => {
            return Err(format!(
                "CALICO_RS_BGP_IMPORT_LIMIT_ACTION: '{other}' is not one of block, warn, restart, disable"
            ));
        }
    };
    Ok((max > 0).then_some(bgp::config::ImportLimit { max, action }))
}

/// Normalises `CALICO_IPV4POOL_IPIP` / `_VXLAN` values as calico-node does.
pub fn parse_encap_mode(name: &str, value: &str) -> Result<EncapMode, String> {
    match value.trim() {
        "Always" | "always" => Ok(EncapMode::Always),
        "CrossSubnet" | "cross-subnet" | "crosssubnet" => Ok(EncapMode::CrossSubnet),
        "Never" | "never" | "off" | "Off" | "" => Ok(EncapMode::Never),
        other => Err(format!(
            "{name}: '{other}' is not one of Always, CrossSubnet, Never"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encap_modes_accept_calico_node_spellings() {
        assert_eq!(
            parse_encap_mode("X", "cross-subnet"),
            Ok(EncapMode::CrossSubnet)
        );
        assert_eq!(parse_encap_mode("X", "off"), Ok(EncapMode::Never));
        assert!(parse_encap_mode("X", "sometimes").is_err());
        assert_eq!(parse_bool("X", "TRUE"), Ok(true));
        assert!(parse_bool("X", "maybe").is_err());
    }

    #[test]
    fn the_import_limit_is_off_at_zero_and_a_bad_action_is_named() {
        use bgp::config::{ImportLimit, LimitAction};
        assert_eq!(
            import_limit(100, "disable"),
            Ok(Some(ImportLimit {
                max: 100,
                action: LimitAction::Disable
            }))
        );
        assert_eq!(import_limit(0, "block"), Ok(None));
        assert!(import_limit(10, "explode").is_err_and(|e| e.contains("IMPORT_LIMIT_ACTION")));
    }
}
