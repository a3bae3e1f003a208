//! Reads the BGP sessions out of a BIRD configuration rendered by Calico's confd (the golden
//! `bird.cfg` / `bird6.cfg` files of Calico's template tests), as the fields `calicoctl node
//! status -o json` reports for each session. Only what confd's template writes is
//! understood: `router id`, `listen bgp`, `template bgp` and `protocol bgp ... from ...`
//! blocks with one statement per line.

use std::collections::BTreeMap;

/// One session: its protocol name and each setting as `node status -o json` names it
/// (values as strings, so two sides compare and print alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub name: String,
    pub fields: BTreeMap<&'static str, String>,
}

/// What a golden file says about the node and its sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BirdConfig {
    pub router_id: Option<String>,
    pub sessions: Vec<Session>,
}

/// Settings a `template bgp` or `protocol bgp` block sets, before defaults.
#[derive(Debug, Clone, Default)]
struct Block {
    parent: Option<String>,
    local_as: Option<String>,
    neighbor: Option<(String, String, String)>,
    source: Option<String>,
    passive: bool,
    rr_client: bool,
    rr_cluster_id: Option<String>,
    ttl_security: bool,
    multihop: Option<String>,
    next_hop: Option<&'static str>,
    restart_time: Option<String>,
    password: bool,
    allow_local_as: Option<String>,
    import_filters: Vec<String>,
    export_filters: Vec<String>,
}

/// The settings compared, by their `node status -o json` names.
pub const FIELDS: &[&str] = &[
    "family",
    "peerAddress",
    "port",
    "asNumber",
    "localASNumber",
    "sourceAddress",
    "passive",
    "routeReflectorClient",
    "routeReflectorClusterID",
    "ttlSecurityHops",
    "nextHopMode",
    "gracefulRestartTime",
    "passwordSet",
    "numAllowedLocalASNumbers",
    "importFilters",
    "exportFilters",
];

/// BIRD's graceful-restart time when a protocol sets none.
const BIRD_DEFAULT_RESTART_TIME: &str = "120";

/// Parses a confd-rendered BIRD configuration; `family` is `ipv4` or `ipv6` (which file).
pub fn parse(text: &str, family: &str) -> Result<BirdConfig, String> {
    let mut config = BirdConfig::default();
    let mut templates: BTreeMap<String, Block> = BTreeMap::new();
    let mut protocols: Vec<(String, Block)> = Vec::new();
    // The block being read, and which filter clause inside it (import or export).
    let mut current: Option<(bool, String, Block)> = None;
    let mut clause: Option<bool> = None;
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((_, _, block)) = current.as_mut() else {
            if let Some(id) = line.strip_prefix("router id ") {
                config.router_id = Some(id.trim_end_matches(';').to_string());
            } else if let Some(head) = line.strip_prefix("template bgp ") {
                current = Some((true, block_name(head), block_with_parent(head)));
            } else if let Some(head) = line.strip_prefix("protocol bgp ") {
                current = Some((false, block_name(head), block_with_parent(head)));
            }
            continue;
        };
        if line.starts_with("import filter") {
            clause = Some(true);
            continue;
        }
        if line.starts_with("export filter") {
            clause = Some(false);
            continue;
        }
        if let Some(which) = clause {
            if line.starts_with("};") {
                clause = None;
            } else if let Some(name) = filter_call(line) {
                if which {
                    block.import_filters.push(name);
                } else {
                    block.export_filters.push(name);
                }
            }
            continue;
        }
        if line == "}" {
            if let Some((is_template, name, block)) = current.take() {
                if is_template {
                    templates.insert(name, block);
                } else {
                    protocols.push((name, block));
                }
            }
            continue;
        }
        let statement = line.trim_end_matches(';').trim();
        let words: Vec<&str> = statement.split_whitespace().collect();
        match words.as_slice() {
            ["local", "as", asn] | ["local", _, "as", asn] => {
                block.local_as = Some(asn.to_string())
            }
            ["neighbor", ip, "as", asn] => {
                block.neighbor = Some((ip.to_string(), "179".into(), asn.to_string()))
            }
            ["neighbor", ip, "port", port, "as", asn] => {
                block.neighbor = Some((ip.to_string(), port.to_string(), asn.to_string()))
            }
            ["source", "address", ip] => block.source = Some(ip.to_string()),
            ["passive", "on"] => block.passive = true,
            ["rr", "client"] => block.rr_client = true,
            ["rr", "cluster", "id", id] => block.rr_cluster_id = Some(id.to_string()),
            ["ttl", "security", on] => block.ttl_security = *on == "on",
            ["multihop"] => {}
            ["multihop", hops] => block.multihop = Some(hops.to_string()),
            ["next", "hop", "self"] => block.next_hop = Some("Self"),
            ["next", "hop", "keep"] => block.next_hop = Some("Keep"),
            ["graceful", "restart", "time", secs] => block.restart_time = Some(secs.to_string()),
            ["password", ..] => block.password = true,
            ["allow", "local", "as", count] => block.allow_local_as = Some(count.to_string()),
            _ => {}
        }
    }
    if current.is_some() {
        return Err("a bgp block is not closed".to_string());
    }
    for (name, block) in protocols {
        let resolved = resolve(&block, &templates);
        config
            .sessions
            .push(session(name, family, &resolved).ok_or("a protocol has no neighbor")?);
    }
    Ok(config)
}

/// `Mesh_10_192_0_3 from bgp_template {` -> `Mesh_10_192_0_3`.
fn block_name(head: &str) -> String {
    head.split_whitespace().next().unwrap_or("").to_string()
}

fn block_with_parent(head: &str) -> Block {
    let words: Vec<&str> = head.split_whitespace().collect();
    let parent = match words.as_slice() {
        [_, "from", parent, ..] => Some(parent.to_string()),
        _ => None,
    };
    Block {
        parent,
        ..Block::default()
    }
}

/// `'bgp_test-filter_importFilterV4'();` -> `test-filter`.
fn filter_call(line: &str) -> Option<String> {
    let quoted = line.strip_prefix("'bgp_")?;
    let end = quoted.find('\'')?;
    let function = &quoted[..end];
    let cut = function
        .rfind("_importFilterV")
        .or(function.rfind("_exportFilterV"))?;
    Some(function[..cut].to_string())
}

/// A protocol's settings with its templates' filled in (the protocol's own win).
fn resolve(block: &Block, templates: &BTreeMap<String, Block>) -> Block {
    let mut out = block.clone();
    let mut parent = block.parent.clone();
    // Bounded: a template cannot name itself into an endless chain.
    for _ in 0..8 {
        let Some(t) = parent.as_ref().and_then(|p| templates.get(p)) else {
            break;
        };
        out.local_as = out.local_as.or(t.local_as.clone());
        out.restart_time = out.restart_time.or(t.restart_time.clone());
        out.source = out.source.or(t.source.clone());
        out.password |= t.password;
        parent = t.parent.clone();
    }
    out
}

fn session(name: String, family: &str, b: &Block) -> Option<Session> {
    let (ip, port, asn) = b.neighbor.clone()?;
    let ttl_hops = if b.ttl_security {
        b.multihop.clone().unwrap_or_else(|| "1".into())
    } else {
        "0".into()
    };
    let fields = BTreeMap::from([
        ("family", family.to_string()),
        ("peerAddress", ip),
        ("port", port),
        ("asNumber", asn),
        ("localASNumber", b.local_as.clone().unwrap_or_default()),
        ("sourceAddress", b.source.clone().unwrap_or_default()),
        ("passive", b.passive.to_string()),
        ("routeReflectorClient", b.rr_client.to_string()),
        (
            "routeReflectorClusterID",
            b.rr_cluster_id.clone().unwrap_or_default(),
        ),
        ("ttlSecurityHops", ttl_hops),
        ("nextHopMode", b.next_hop.unwrap_or("Auto").to_string()),
        (
            "gracefulRestartTime",
            b.restart_time
                .clone()
                .unwrap_or_else(|| BIRD_DEFAULT_RESTART_TIME.into()),
        ),
        ("passwordSet", b.password.to_string()),
        (
            "numAllowedLocalASNumbers",
            b.allow_local_as.clone().unwrap_or_else(|| "0".into()),
        ),
        ("importFilters", b.import_filters.join(",")),
        ("exportFilters", b.export_filters.join(",")),
    ]);
    Some(Session { name, fields })
}

/// The name confd gives a BGPFilter inside BIRD's symbols (`'bgp_<name>_importFilterV4'`):
/// BIRD allows 64 characters, so a name longer than 45 becomes its first 28 characters,
/// `_` and the first 16 hex digits of its SHA-256 (`TruncateAndHashName` in confd's
/// `pkg/resource/template/util.go`).
pub fn bird_filter_name(name: &str) -> String {
    use sha2::{Digest, Sha256};
    const MAX: usize = 64 - "bgp__importFilterV4".len();
    const HASH_CHARS: usize = 16;
    if name.len() <= MAX {
        return name.to_string();
    }
    let hash: String = Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let keep = MAX - HASH_CHARS - 1;
    format!(
        "{}_{}",
        name.get(..keep).unwrap_or(name),
        &hash[..HASH_CHARS]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
router id 10.192.0.2;
listen bgp port 150;
template bgp bgp_template {
  debug all;
  local as 64567;
  graceful restart;  # See comment
}
protocol bgp Global_10_192_0_1_port_166 from bgp_template {
  neighbor 10.192.0.1 port 166 as 64567;
  source address 10.192.0.2;  # The local address we use for the TCP connection
  ttl security on;
  multihop 2;
  import filter {
    'bgp_f-1_importFilterV4'();
    accept;
  };
  export filter {
    if (defined(source)) then {
      krt_metric = 1;
    }
    'bgp_f-2_exportFilterV4'(true);
    reject;
  };  # Only want to export routes for workloads.
  rr client;
  rr cluster id 10.0.0.1;
  next hop keep;
}
protocol bgp Mesh_10_192_0_3 from bgp_template {
  local as 65001;
  neighbor 10.192.0.3 as 64512;
  passive on;
  graceful restart time 10;
  allow local as 1;
  password "secret";
}
"#;

    #[test]
    fn reads_every_setting_and_the_templates_defaults() {
        let c = parse(SAMPLE, "ipv4").expect("parses");
        assert_eq!(c.router_id.as_deref(), Some("10.192.0.2"));
        assert_eq!(c.sessions.len(), 2);
        let g = &c.sessions[0];
        assert_eq!(g.name, "Global_10_192_0_1_port_166");
        let want = [
            ("family", "ipv4"),
            ("peerAddress", "10.192.0.1"),
            ("port", "166"),
            ("asNumber", "64567"),
            ("localASNumber", "64567"),
            ("sourceAddress", "10.192.0.2"),
            ("passive", "false"),
            ("routeReflectorClient", "true"),
            ("routeReflectorClusterID", "10.0.0.1"),
            ("ttlSecurityHops", "2"),
            ("nextHopMode", "Keep"),
            ("gracefulRestartTime", "120"),
            ("passwordSet", "false"),
            ("importFilters", "f-1"),
            ("exportFilters", "f-2"),
        ];
        for (k, v) in want {
            assert_eq!(g.fields[k], v, "{k}");
        }
        let keys: Vec<&str> = g.fields.keys().copied().collect();
        let mut all = FIELDS.to_vec();
        all.sort();
        assert_eq!(keys, all, "a session has exactly the compared fields");
        let m = &c.sessions[1];
        assert_eq!(m.fields["localASNumber"], "65001");
        assert_eq!(m.fields["port"], "179");
        assert_eq!(m.fields["passive"], "true");
        assert_eq!(m.fields["gracefulRestartTime"], "10");
        assert_eq!(m.fields["numAllowedLocalASNumbers"], "1");
        assert_eq!(m.fields["passwordSet"], "true");
        assert_eq!(m.fields["sourceAddress"], "");
        assert_eq!(m.fields["ttlSecurityHops"], "0");
    }

    #[test]
    fn an_unclosed_block_is_an_error() {
        assert!(parse("protocol bgp X from t {\n neighbor 1.1.1.1 as 1;\n", "ipv4").is_err());
    }

    #[test]
    fn long_filter_names_are_truncated_and_hashed_as_confd_does() {
        // The names and symbols of Calico's corpus case bgpfilter/filter_names.
        for (name, symbol) in [
            (
                "45characters.exactly.so.should.not.truncate-1",
                "45characters.exactly.so.should.not.truncate-1",
            ),
            (
                "46characters.exactly.so.should.truncate-123456",
                "46characters.exactly.so.shou_9615CBDC00BAC628",
            ),
            (
                "greater-than-64-characters.so.this.should.definitely.truncate-1234567890",
                "greater-than-64-characters.s_4C5DB3273E544641",
            ),
        ] {
            assert_eq!(bird_filter_name(name), symbol);
        }
    }
}
