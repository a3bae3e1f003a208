//! `calicoctl flannel subnets`: the subnet leases of calico-node's flannel backend (or of
//! flannel itself: same keys) as a table.
//!
//! ```text
//! SUBNET          PUBLICIP   BACKEND   VTEPMAC             EXPIRES
//! 10.244.1.0/24   10.0.0.1   vxlan     02:4f:1a:7c:9e:10   23h59m58s
//! ```
//!
//! `EXPIRES` is the lease's remaining time to live (`never` for a reservation, a key without
//! TTL); `-o wide` adds the etcd lease id (as `etcdctl lease timetolive` takes it) and the
//! VNI; `-o json` prints the rows as JSON.

use std::sync::Arc;
use std::time::Duration;

use datastore::{Datastore, KeyValue};
use serde_json::{Value, json};

use crate::cli::{FlannelArgs, FlannelCommand};
use crate::error::{CliError, CliResult};
use crate::output::table;

/// One lease as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetRow {
    /// `10.244.1.0/24`.
    pub subnet: String,
    pub public_ip: String,
    pub backend: String,
    pub vtep_mac: String,
    pub vni: String,
    /// The etcd lease, `None` for a reservation.
    pub lease: Option<i64>,
    /// Remaining time to live; `None` when unknown or a reservation.
    pub ttl: Option<Duration>,
}

impl SubnetRow {
    /// Decodes a key under `<prefix>/subnets/`; `None` for keys that are not leases.
    pub fn from_kv(kv: &KeyValue) -> Option<SubnetRow> {
        let name = kv.key.rsplit('/').next()?;
        let v4 = name.split('&').next()?;
        let (ip, len) = v4.rsplit_once('-')?;
        let value: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        Some(SubnetRow {
            subnet: format!("{ip}/{len}"),
            public_ip: text(&value["PublicIP"]),
            backend: text(&value["BackendType"]),
            vtep_mac: text(&value["BackendData"]["VtepMAC"]),
            vni: text(&value["BackendData"]["VNI"]),
            lease: kv.lease,
            ttl: None,
        })
    }
}

/// `23h59m58s`, `4m2s`, `3s` (Go's `time.Duration` style, whole seconds).
pub fn format_ttl(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

fn expires(row: &SubnetRow) -> String {
    match (row.lease, row.ttl) {
        (None, _) => "never".to_string(),
        (Some(_), Some(ttl)) => format_ttl(ttl),
        (Some(_), None) => "-".to_string(),
    }
}

/// Renders the rows in `output` format (`ps`, `wide`, `json`).
pub fn render(rows: &[SubnetRow], output: &str) -> CliResult<String> {
    match output {
        "ps" | "" => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.subnet.clone(),
                        dash(&r.public_ip),
                        dash(&r.backend),
                        dash(&r.vtep_mac),
                        expires(r),
                    ]
                })
                .collect();
            Ok(table::render(
                &["SUBNET", "PUBLICIP", "BACKEND", "VTEPMAC", "EXPIRES"],
                &cells,
            ))
        }
        "wide" => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.subnet.clone(),
                        dash(&r.public_ip),
                        dash(&r.backend),
                        dash(&r.vni),
                        dash(&r.vtep_mac),
                        r.lease.map_or("-".to_string(), |l| format!("{l:x}")),
                        expires(r),
                    ]
                })
                .collect();
            Ok(table::render(
                &[
                    "SUBNET", "PUBLICIP", "BACKEND", "VNI", "VTEPMAC", "LEASE", "EXPIRES",
                ],
                &cells,
            ))
        }
        "json" => {
            let items: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "subnet": r.subnet,
                        "publicIP": r.public_ip,
                        "backendType": r.backend,
                        "vtepMAC": r.vtep_mac,
                        "lease": r.lease.map(|l| format!("{l:x}")),
                        "ttlSeconds": r.ttl.map(|t| t.as_secs()),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&items)
                .map(|s| s + "\n")
                .map_err(|e| CliError::new(e.to_string()))
        }
        other => Err(CliError::new(format!(
            "unrecognized output format '{other}' (use ps, wide or json)"
        ))),
    }
}

/// Reads every lease with its remaining TTL.
pub async fn rows(ds: &Arc<dyn Datastore>, prefix: &str) -> CliResult<Vec<SubnetRow>> {
    let dir = format!("{}/subnets/", prefix.trim_end_matches('/'));
    let listing = ds
        .list(&dir)
        .await
        .map_err(|e| CliError::new(format!("cannot list {dir}: {e}")))?;
    let mut out = Vec::new();
    for kv in &listing.items {
        let Some(mut row) = SubnetRow::from_kv(kv) else {
            continue;
        };
        if let Some(lease) = row.lease {
            match ds.lease_time_to_live(lease).await {
                Ok(ttl) => row.ttl = ttl,
                // Expired between the listing and now: the key is gone too.
                Err(datastore::Error::LeaseNotFound(_)) => continue,
                Err(e) => return Err(CliError::new(format!("lease {lease:x}: {e}"))),
            }
        }
        out.push(row);
    }
    // By address, not by key text (10.244.5.0 before 10.244.25.0).
    out.sort_by_key(|r| {
        let (ip, len) = r.subnet.split_once('/').unwrap_or((&r.subnet, ""));
        (
            ip.parse::<std::net::Ipv4Addr>().ok(),
            len.parse::<u8>().ok(),
        )
    });
    Ok(out)
}

/// Runs one `flannel` command and prints its output.
pub async fn run(ds: Arc<dyn Datastore>, args: FlannelArgs) -> CliResult {
    match args.command {
        FlannelCommand::Subnets(a) => {
            let rows = rows(&ds, &a.prefix).await?;
            print!("{}", render(&rows, &a.output)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use datastore::MemoryStore;

    use super::*;
    use crate::cli::DEFAULT_PREFIX;

    #[tokio::test]
    async fn lists_leases_in_a_table_with_remaining_ttl() -> Result<(), Box<dyn std::error::Error>>
    {
        let ds: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
        let lease = ds.grant_lease(Duration::from_secs(86400)).await?;
        ds.create(
            "/coreos.com/network/subnets/10.244.1.0-24",
            br#"{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#.to_vec(),
            Some(lease.id),
        )
        .await?;
        ds.create(
            "/coreos.com/network/subnets/10.244.2.0-24",
            br#"{"PublicIP":"10.0.0.2","PublicIPv6":null,"BackendType":"host-gw"}"#.to_vec(),
            None,
        )
        .await?;
        ds.create("/coreos.com/network/config", b"{}".to_vec(), None)
            .await?;
        let mut rows = rows(&ds, DEFAULT_PREFIX).await?;
        assert_eq!(rows.len(), 2);
        let ttl = rows[0].ttl.expect("ttl");
        assert!(ttl > Duration::from_secs(86000), "{ttl:?}");
        rows[0].ttl = Some(Duration::from_secs(86399));
        assert_eq!(
            render(&rows, "ps")?,
            "SUBNET          PUBLICIP   BACKEND   VTEPMAC             EXPIRES     \n\
             10.244.1.0/24   10.0.0.1   vxlan     c6:d2:32:6f:8f:44   23h59m59s   \n\
             10.244.2.0/24   10.0.0.2   host-gw   -                   never       \n\n"
        );
        let wide = render(&rows, "wide")?;
        assert!(wide.contains(&format!("{:x}", lease.id)), "{wide}");
        let json: Value = serde_json::from_str(&render(&rows, "json")?)?;
        assert_eq!(json[1]["backendType"], "host-gw");
        assert!(render(&rows, "yaml").is_err());
        Ok(())
    }

    #[test]
    fn ttls_print_like_go_durations() {
        assert_eq!(format_ttl(Duration::from_secs(3)), "3s");
        assert_eq!(format_ttl(Duration::from_secs(242)), "4m2s");
        assert_eq!(format_ttl(Duration::from_secs(86399)), "23h59m59s");
    }
}
