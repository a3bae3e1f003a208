//! calico-node's HTTP endpoints: `/liveness` and `/readiness` (as Felix's health port,
//! 9099) and Prometheus `/metrics` (9091): resyncs, applies and BGP sessions counted.
//! Liveness is the supervisor's view (every task running, none stuck), read at each
//! request; readiness adds the datastore, the dataplane and BGP as they are now.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use datastore::model::NodeStatusReport;
use tokio::sync::watch;

use super::dataplane::DataplaneMetrics;
use crate::config::NodeConfig;
use crate::liveness::Liveness;

/// What the endpoints read.
#[derive(Clone)]
pub struct HealthState {
    pub report: watch::Receiver<NodeStatusReport>,
    pub metrics: Arc<DataplaneMetrics>,
    pub bfd: Arc<super::bfd_link::BfdMetrics>,
    pub liveness: Liveness,
}

/// Live while every task runs and none is stuck; else 503 naming them.
async fn liveness(State(s): State<HealthState>) -> (StatusCode, String) {
    let problems = s.liveness.problems();
    if problems.is_empty() {
        (StatusCode::OK, "live\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not live: {}\n", problems.join(", ")),
        )
    }
}

/// Ready while live, the datastore is in sync and the dataplane's last pass applied
/// everything; with BGP, also when at least one session is up or none is configured (as
/// calico-node's `-bird-ready`).
async fn readiness(State(s): State<HealthState>) -> (StatusCode, String) {
    let r = s.report.borrow().clone();
    let mut problems = s.liveness.problems();
    if r.datastore != "in-sync" {
        problems.push(format!("datastore {}", r.datastore));
    }
    if !r.dataplane_ready {
        problems.push("dataplane not in sync with the desired state".to_string());
    }
    if r.backend == "bird" && r.peers().next().is_some() && !r.peers().any(|p| p.state == "up") {
        problems.push("BGP not established with any peer".to_string());
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join(", ")),
        )
    }
}

async fn metrics(State(s): State<HealthState>) -> String {
    let m = &s.metrics;
    let r = s.report.borrow().clone();
    let mut out = String::new();
    let counters = [
        (
            "calico_rs_dataplane_passes_total",
            "Dataplane reconcile passes.",
            m.passes.load(Ordering::Relaxed),
        ),
        (
            "calico_rs_routes_added_total",
            "Routes added or replaced.",
            m.routes_added.load(Ordering::Relaxed),
        ),
        (
            "calico_rs_routes_removed_total",
            "Routes removed.",
            m.routes_removed.load(Ordering::Relaxed),
        ),
        (
            "calico_rs_dataplane_failures_total",
            "Failed kernel operations (retried).",
            m.failures.load(Ordering::Relaxed),
        ),
        (
            "calico_rs_kernel_events_total",
            "Kernel route/link notifications seen.",
            m.kernel_events.load(Ordering::Relaxed),
        ),
        (
            "calico_rs_kernel_echoes_total",
            "Kernel route notifications that echoed the dataplane's own writes (no table dump).",
            m.kernel_echoes.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let last = m.last_pass_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(
        out,
        "# HELP calico_rs_dataplane_last_pass_seconds Duration of the last reconcile pass.\n# TYPE calico_rs_dataplane_last_pass_seconds gauge\ncalico_rs_dataplane_last_pass_seconds {last}"
    );
    let up = r.peers().filter(|p| p.state == "up").count();
    let _ = writeln!(
        out,
        "# HELP calico_rs_bgp_peers BGP sessions by state.\n# TYPE calico_rs_bgp_peers gauge\ncalico_rs_bgp_peers{{state=\"up\"}} {up}\ncalico_rs_bgp_peers{{state=\"other\"}} {}",
        r.peers().count() - up
    );
    let bfd: Vec<&str> = r
        .peers()
        .filter_map(|p| p.bfd.as_ref().map(|b| b.state.as_str()))
        .collect();
    let bfd_up = bfd.iter().filter(|s| **s == "Up").count();
    let _ = writeln!(
        out,
        "# HELP calico_rs_bfd_sessions BFD sessions by state.\n# TYPE calico_rs_bfd_sessions gauge\ncalico_rs_bfd_sessions{{state=\"up\"}} {bfd_up}\ncalico_rs_bfd_sessions{{state=\"other\"}} {}",
        bfd.len() - bfd_up
    );
    let _ = writeln!(
        out,
        "# HELP calico_rs_bfd_state_changes_total BFD session state changes.\n# TYPE calico_rs_bfd_state_changes_total counter\ncalico_rs_bfd_state_changes_total {}",
        s.bfd.state_changes.load(Ordering::Relaxed)
    );
    out
}

/// The bound health and metrics listeners, each optional (port 0 disables it).
pub struct Endpoints {
    health: Option<(SocketAddr, tokio::net::TcpListener)>,
    metrics: Option<(SocketAddr, tokio::net::TcpListener)>,
    state: HealthState,
}

/// The address `host` (an IP literal, v4 or v6, or a name resolved now) with `port`.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("FELIX_HEALTHHOST: cannot resolve '{host}'"))?
        .next()
        .with_context(|| format!("FELIX_HEALTHHOST: '{host}' has no address"))
}

async fn listen(
    host: &str,
    port: u16,
    what: &str,
) -> Result<Option<(SocketAddr, tokio::net::TcpListener)>> {
    if port == 0 {
        return Ok(None);
    }
    let addr = resolve(host, port).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for {what} on {addr}"))?;
    Ok(Some((addr, listener)))
}

impl Endpoints {
    /// Binds `/liveness` + `/readiness` on `FELIX_HEALTHHOST:FELIX_HEALTHPORT` and
    /// `/metrics` on the metrics port; None when both are disabled. A host that cannot be
    /// resolved or a port in use is an error, not a silently missing endpoint.
    pub async fn bind(cfg: &NodeConfig, state: HealthState) -> Result<Option<Endpoints>> {
        let health = listen(&cfg.health_host, cfg.health_port, "health").await?;
        let metrics = listen(&cfg.health_host, cfg.metrics_port, "metrics").await?;
        if health.is_none() && metrics.is_none() {
            return Ok(None);
        }
        Ok(Some(Endpoints {
            health,
            metrics,
            state,
        }))
    }

    /// Serves until a listener fails (which ends the task: the supervisor exits).
    pub async fn serve(self) -> Result<()> {
        let health_app = Router::new()
            .route("/liveness", get(liveness))
            .route("/readiness", get(readiness))
            .with_state(self.state.clone());
        let metrics_app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(self.state);
        let serve = |bound: Option<(SocketAddr, tokio::net::TcpListener)>, app: Router| async move {
            match bound {
                Some((addr, listener)) => axum::serve(listener, app)
                    .await
                    .with_context(|| format!("HTTP endpoint {addr} stopped")),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = serve(self.health, health_app) => r,
            r = serve(self.metrics, metrics_app) => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_health_host_may_be_an_ipv4_or_ipv6_literal_or_a_name() {
        let v4 = resolve("127.0.0.1", 9099).await.map_err(|e| e.to_string());
        assert_eq!(v4, Ok("127.0.0.1:9099".parse().expect("addr")));
        for v6 in ["::1", "[::1]"] {
            let got = resolve(v6, 9099).await.map_err(|e| e.to_string());
            assert_eq!(got, Ok("[::1]:9099".parse().expect("addr")), "{v6}");
        }
        let named = resolve("localhost", 9099).await.map_err(|e| e.to_string());
        assert!(
            named
                .as_ref()
                .is_ok_and(|a| a.ip().is_loopback() && a.port() == 9099),
            "{named:?}"
        );
        let bad = resolve("no-such-host.invalid", 9099).await;
        assert!(
            bad.is_err_and(|e| e.to_string().contains("FELIX_HEALTHHOST")),
            "an unknown name is an error naming the setting"
        );
    }
}
