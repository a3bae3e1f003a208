//! `calicoctl node status`: asks the calico-node on this host (its status socket under
//! `CALICO_RUN_DIR`) and prints Calico's text and tables. Calico parses BIRD's
//! `show protocols`; calico-rs's agent reports the same columns directly. `-o json` /
//! `-o yaml` print every session with its settings, counts and why it is down.

use datastore::model::{BgpPeerStatus, NodeStatusReport, STATUS_SOCKET};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use super::ipam::table::{render, wrap};
use crate::cli::{NodeArgs, NodeCommand, StatusArgs};
use crate::error::{CliError, CliResult};
use crate::output::document::{to_json, to_yaml};

/// Dispatches `node` subcommands.
pub async fn run(args: NodeArgs) -> CliResult {
    match args.command {
        NodeCommand::Status(s) => status(s).await,
    }
}

async fn status(args: StatusArgs) -> CliResult {
    if !nix::unistd::geteuid().is_root() {
        return Err(CliError::new(
            "Need super user privileges: Operation not permitted",
        ));
    }
    let path = args.run_dir.join(STATUS_SOCKET);
    let report = query(&path).await.ok();
    match (args.output.as_deref(), &report) {
        (None, Some(report)) => print!("{}", format_status(report)),
        // Calico prints this on stdout and exits 1.
        (None, None) => println!("Calico process is not running."),
        (Some(format), report) => {
            let view = serde_json::to_value(StatusView::of(report.as_ref()))
                .map_err(|e| CliError::new(format!("Failed to execute command: {e}")))?;
            let text = if format == "yaml" {
                to_yaml(view)?
            } else {
                to_json(&view)?
            };
            print!("{text}");
        }
    }
    if report.is_none() {
        std::process::exit(1);
    }
    Ok(())
}

/// `node status -o json|yaml`: the node, then one object per session.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    /// False when no calico-node answers on this host (the rest is then empty).
    running: bool,
    node_name: String,
    version: String,
    #[serde(rename = "routerID")]
    router_id: String,
    as_number: u32,
    /// `bird` (BGP), `vxlan`, `none` or `flannel`.
    backend: String,
    datastore: String,
    dataplane_ready: bool,
    warnings: Vec<String>,
    peers: Vec<BgpPeerStatus>,
}

impl StatusView {
    fn of(report: Option<&NodeStatusReport>) -> StatusView {
        let Some(r) = report else {
            return StatusView::default();
        };
        let peers = r
            .peers()
            .map(|p| BgpPeerStatus {
                info: one_spaced(&p.info),
                ..p.clone()
            })
            .collect();
        StatusView {
            running: true,
            node_name: r.node.clone(),
            version: r.version.clone(),
            router_id: r.router_id.clone(),
            as_number: r.as_number,
            backend: r.backend.clone(),
            datastore: r.datastore.clone(),
            dataplane_ready: r.dataplane_ready,
            warnings: r.warnings.clone(),
            peers,
        }
    }
}

async fn query(path: &std::path::Path) -> std::io::Result<NodeStatusReport> {
    let mut stream = UnixStream::connect(path).await?;
    let mut body = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(2),
        stream.read_to_end(&mut body),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "status read timed out"))??;
    serde_json::from_slice(&body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// BIRD's info with its column padding (`Active        Socket: ...`) down to single
/// spaces, as calicoctl shows it.
fn one_spaced(info: &str) -> String {
    info.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn peer_table(peers: &[BgpPeerStatus]) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                p.peer_address.clone(),
                p.peer_type.clone(),
                p.state.clone(),
                p.since.clone(),
                // calicoctl joins BIRD's info fields with single spaces, then wraps.
                wrap(&one_spaced(&p.info)),
            ]
        })
        .collect();
    render(
        &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
        &rows,
    )
}

/// The BFD sessions protecting BGP sessions, one row each (the section is printed only
/// when there are some).
fn bfd_table(peers: &[BgpPeerStatus]) -> Option<String> {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .filter_map(|p| {
            let b = p.bfd.as_ref()?;
            Some(vec![
                p.peer_address.clone(),
                b.state.clone(),
                format!("{}ms x {}", b.minimum_send_interval_ms, b.multiplier),
                format!("{}ms", b.detection_time_ms),
                b.diagnostic.clone(),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| {
        render(
            &[
                "PEER ADDRESS",
                "STATE",
                "INTERVAL",
                "DETECTION TIME",
                "DIAGNOSTIC",
            ],
            &rows,
        )
    })
}

/// The whole `node status` text.
pub fn format_status(report: &NodeStatusReport) -> String {
    let mut out = String::from("Calico process is running.\n");
    if report.backend != "bird" {
        out.push_str(&format!(
            "\nBGP is not in use on this node (CALICO_NETWORKING_BACKEND={}).\n",
            report.backend
        ));
    } else {
        for (family, peers) in [("IPv4", &report.peers_v4), ("IPv6", &report.peers_v6)] {
            out.push_str(&format!("\n{family} BGP status\n"));
            if peers.is_empty() {
                out.push_str(&format!("No {family} peers found.\n"));
            } else {
                out.push_str(&peer_table(peers));
            }
        }
        for (family, peers) in [("IPv4", &report.peers_v4), ("IPv6", &report.peers_v6)] {
            if let Some(t) = bfd_table(peers) {
                out.push_str(&format!("\n{family} BFD status\n"));
                out.push_str(&t);
            }
        }
    }
    for w in &report.warnings {
        out.push_str(&format!("\nWARNING: {w}\n"));
    }
    if report.datastore != "in-sync" {
        out.push_str(&format!(
            "\nWARNING: datastore connection is {}\n",
            report.datastore
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, info: &str, state: &str, since: &str) -> BgpPeerStatus {
        BgpPeerStatus {
            peer_address: addr.into(),
            peer_type: "node-to-node mesh".into(),
            state: state.into(),
            since: since.into(),
            info: info.into(),
            ..BgpPeerStatus::default()
        }
    }

    #[test]
    fn json_lists_every_session_with_one_space_info_and_no_password() {
        let report = NodeStatusReport {
            node: "kube-master".into(),
            backend: "bird".into(),
            router_id: "10.192.0.2".into(),
            as_number: 64512,
            datastore: "in-sync".into(),
            peers_v4: vec![BgpPeerStatus {
                name: "Global_10_192_0_9".into(),
                password_set: true,
                ..peer(
                    "10.192.0.9",
                    "Active        Socket: Connection refused",
                    "start",
                    "17:19:38",
                )
            }],
            ..NodeStatusReport::default()
        };
        let v = serde_json::to_value(StatusView::of(Some(&report))).expect("json");
        assert_eq!(v["running"], true);
        assert_eq!(v["nodeName"], "kube-master");
        assert_eq!(v["routerID"], "10.192.0.2");
        assert_eq!(v["asNumber"], 64512);
        let peer = &v["peers"][0];
        assert_eq!(peer["name"], "Global_10_192_0_9");
        assert_eq!(peer["info"], "Active Socket: Connection refused");
        assert_eq!(peer["passwordSet"], true);
        for field in [
            "localASNumber",
            "routeReflectorClusterID",
            "ttlSecurityHops",
        ] {
            assert!(peer.get(field).is_some(), "no {field} in {peer}");
        }
        assert!(peer.get("password").is_none());
        let down = serde_json::to_value(StatusView::of(None)).expect("json");
        assert_eq!(down["running"], false);
        assert_eq!(down["peers"], serde_json::json!([]));
    }

    #[test]
    fn node_status_matches_calicos_layout() {
        let report = NodeStatusReport {
            node: "n1".into(),
            backend: "bird".into(),
            datastore: "in-sync".into(),
            dataplane_ready: true,
            peers_v4: vec![
                peer("172.31.40.217", "Established", "up", "17:38:47"),
                peer("172.31.40.30", "Established", "up", "17:40:09"),
            ],
            ..NodeStatusReport::default()
        };
        let expected = "\
Calico process is running.

IPv4 BGP status
+---------------+-------------------+-------+----------+-------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+---------------+-------------------+-------+----------+-------------+
| 172.31.40.217 | node-to-node mesh | up    | 17:38:47 | Established |
| 172.31.40.30  | node-to-node mesh | up    | 17:40:09 | Established |
+---------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.

";
        assert_eq!(format_status(&report), expected);
    }

    #[test]
    fn ipv6_sessions_get_the_ipv6_table() {
        let report = NodeStatusReport {
            backend: "bird".into(),
            datastore: "in-sync".into(),
            dataplane_ready: true,
            peers_v6: vec![peer("fd00:0:0::2", "Established", "up", "17:38:47")],
            ..NodeStatusReport::default()
        };
        let expected = "\
Calico process is running.

IPv4 BGP status
No IPv4 peers found.

IPv6 BGP status
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| fd00:0:0::2  | node-to-node mesh | up    | 17:38:47 | Established |
+--------------+-------------------+-------+----------+-------------+

";
        assert_eq!(format_status(&report), expected);
    }

    #[test]
    fn long_info_wraps_inside_the_cell() {
        let report = NodeStatusReport {
            backend: "bird".into(),
            datastore: "in-sync".into(),
            peers_v4: vec![peer(
                "192.168.63.204",
                "Active        Socket: Connection refused",
                "start",
                "17:19:38",
            )],
            ..NodeStatusReport::default()
        };
        let text = format_status(&report);
        assert!(
            text.contains("| start | 17:19:38 | Active Socket: Connection |"),
            "{text}"
        );
        assert!(
            text.contains("|       |          | refused                   |"),
            "{text}"
        );
    }

    #[test]
    fn no_peers_and_warnings_are_said() {
        let report = NodeStatusReport {
            backend: "bird".into(),
            datastore: "reconnecting".into(),
            warnings: vec!["kernel has no ipip support".into()],
            ..NodeStatusReport::default()
        };
        let text = format_status(&report);
        assert!(text.contains("IPv4 BGP status\nNo IPv4 peers found.\n"));
        assert!(text.contains("WARNING: kernel has no ipip support"));
        assert!(text.contains("WARNING: datastore connection is reconnecting"));
    }
}
