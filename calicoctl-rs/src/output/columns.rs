//! Calico's column sets per kind (`calicoctl/resourcemgr/*.go`) and each cell's value.

use datastore::model::{AnyResource, Kind};

/// The `ps` and `wide` headings of a kind.
pub fn headings(kind: Kind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        Kind::Node => (&["NAME"], &["NAME", "ASN", "IPV4", "IPV6"]),
        Kind::IPPool => (
            &["NAME", "CIDR", "SELECTOR"],
            &[
                "NAME",
                "CIDR",
                "NAT",
                "IPIPMODE",
                "VXLANMODE",
                "DISABLED",
                "DISABLEBGPEXPORT",
                "SELECTOR",
            ],
        ),
        Kind::BGPPeer => (
            &["NAME", "PEERIP", "NODE", "ASN"],
            &["NAME", "PEERIP", "NODE", "ASN"],
        ),
        Kind::BGPConfiguration => (
            &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
            &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
        ),
        Kind::IPAMConfiguration => (
            &["NAME"],
            &[
                "NAME",
                "STRICTAFFINITY",
                "AUTOALLOCATEBLOCKS",
                "MAXBLOCKSPERHOST",
            ],
        ),
        Kind::WorkloadEndpoint => (
            &["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"],
            &[
                "NAME",
                "WORKLOAD",
                "NODE",
                "NETWORKS",
                "INTERFACE",
                "PROFILES",
                "NATS",
            ],
        ),
        Kind::BGPFilter => (BGPFILTER_COLUMNS, BGPFILTER_COLUMNS),
        Kind::FelixConfiguration | Kind::ClusterInformation | Kind::BFDConfiguration => {
            (&["NAME"], &["NAME"])
        }
    }
}

/// `calicoctl/resourcemgr/bgpfilter.go`: the same columns for `ps` and `wide`.
const BGPFILTER_COLUMNS: &[&str] = &[
    "NAME",
    "NUMEXPORTV4",
    "NUMIMPORTV4",
    "NUMEXPORTV6",
    "NUMIMPORTV6",
];

/// Context some cells need: the cluster AS as `config "asnumber"` renders it
/// (`64512` when BGPConfiguration `default` or its asNumber is absent, `unknown` on error).
pub struct CellContext {
    pub cluster_asn: String,
}

fn flag(b: bool) -> String {
    b.to_string()
}

/// The value of column `heading` for `r`.
pub fn cell(r: &AnyResource, heading: &str, ctx: &CellContext) -> String {
    let name = r.meta().name.clone();
    match (r, heading) {
        (_, "NAME") => name,
        (_, "NAMESPACE") => r.meta().namespace.clone().unwrap_or_default(),
        (AnyResource::Node(n), h) => {
            let Some(bgp) = &n.spec.bgp else {
                return String::new();
            };
            match h {
                "ASN" => bgp
                    .as_number
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| format!("({})", ctx.cluster_asn)),
                "IPV4" => bgp.ipv4_address.clone().unwrap_or_default(),
                "IPV6" => bgp.ipv6_address.clone().unwrap_or_default(),
                _ => String::new(),
            }
        }
        (AnyResource::IPPool(p), h) => match h {
            "CIDR" => p.spec.cidr.clone(),
            "SELECTOR" => p.spec.node_selector.clone(),
            "NAT" => flag(p.spec.nat_outgoing),
            "IPIPMODE" => p.spec.ipip_mode.to_string(),
            "VXLANMODE" => p.spec.vxlan_mode.to_string(),
            "DISABLED" => flag(p.spec.disabled),
            "DISABLEBGPEXPORT" => flag(p.spec.disable_bgp_export),
            _ => String::new(),
        },
        (AnyResource::BGPPeer(p), h) => match h {
            "PEERIP" => p.spec.peer_ip.clone(),
            "NODE" if !p.spec.node.is_empty() => p.spec.node.clone(),
            "NODE" if !p.spec.node_selector.is_empty() => p.spec.node_selector.clone(),
            "NODE" => "(global)".to_string(),
            "ASN" => p.spec.as_number.map(|a| a.0).unwrap_or(0).to_string(),
            _ => String::new(),
        },
        (AnyResource::BGPFilter(f), h) => match h {
            "NUMEXPORTV4" => f.spec.export_v4.len().to_string(),
            "NUMIMPORTV4" => f.spec.import_v4.len().to_string(),
            "NUMEXPORTV6" => f.spec.export_v6.len().to_string(),
            "NUMIMPORTV6" => f.spec.import_v6.len().to_string(),
            _ => String::new(),
        },
        (AnyResource::BGPConfiguration(c), h) => match h {
            "LOGSEVERITY" => c
                .spec
                .log_severity_screen
                .map(|l| l.to_string())
                .unwrap_or_default(),
            "MESHENABLED" => c
                .spec
                .node_to_node_mesh_enabled
                .map(flag)
                .unwrap_or_else(|| "-".into()),
            "ASNUMBER" => c
                .spec
                .as_number
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            _ => String::new(),
        },
        (AnyResource::IPAMConfiguration(c), h) => match h {
            "STRICTAFFINITY" => flag(c.spec.strict_affinity),
            "AUTOALLOCATEBLOCKS" => flag(c.spec.auto_allocate_blocks),
            "MAXBLOCKSPERHOST" => c.spec.max_blocks_per_host.to_string(),
            _ => String::new(),
        },
        (AnyResource::WorkloadEndpoint(w), h) => match h {
            "WORKLOAD" => w.spec.workload.clone(),
            "NODE" => w.spec.node.clone(),
            "NETWORKS" => w.spec.ip_networks.join(","),
            "INTERFACE" => w.spec.interface_name.clone(),
            "PROFILES" => w.spec.profiles.join(","),
            "NATS" => w
                .spec
                .ip_nats
                .iter()
                .map(|n| format!("{}->{}", n.internal_ip, n.external_ip))
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        },
        _ => String::new(),
    }
}
