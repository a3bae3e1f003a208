//! calico-node's HTTP endpoints: `/liveness` and `/readiness` (as Felix's health port,
//! 9099) and Prometheus `/metrics` (9091): resyncs, applies and BGP sessions counted.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use datastore::model::NodeStatusReport;
use tokio::sync::watch;
use tracing::warn;

use super::dataplane::DataplaneMetrics;

/// What the endpoints read.
#[derive(Clone)]
pub struct HealthState {
    pub report: watch::Receiver<NodeStatusReport>,
    pub metrics: Arc<DataplaneMetrics>,
}

async fn liveness() -> (StatusCode, &'static str) {
    (StatusCode::OK, "live\n")
}

/// Ready once the datastore is in sync and the dataplane has been programmed; with BGP,
/// also when at least one session is up or none is configured (as calico-node's
/// `-bird-ready`).
async fn readiness(State(s): State<HealthState>) -> (StatusCode, String) {
    let r = s.report.borrow().clone();
    let mut problems = Vec::new();
    if r.datastore != "in-sync" {
        problems.push(format!("datastore {}", r.datastore));
    }
    if !r.dataplane_ready {
        problems.push("dataplane not programmed yet".to_string());
    }
    if r.backend == "bird" && !r.peers_v4.is_empty() && !r.peers_v4.iter().any(|p| p.state == "up")
    {
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
    let up = r.peers_v4.iter().filter(|p| p.state == "up").count();
    let _ = writeln!(
        out,
        "# HELP calico_rs_bgp_peers BGP sessions by state.\n# TYPE calico_rs_bgp_peers gauge\ncalico_rs_bgp_peers{{state=\"up\"}} {up}\ncalico_rs_bgp_peers{{state=\"other\"}} {}",
        r.peers_v4.len() - up
    );
    out
}

/// Serves the health endpoints on `health`, and `/metrics` on `metrics_addr` (either may
/// be None = disabled). Returns when both listeners end.
pub async fn serve(
    health: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    state: HealthState,
) {
    let health_app = Router::new()
        .route("/liveness", get(liveness))
        .route("/readiness", get(readiness))
        .with_state(state.clone());
    let metrics_app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    let h = async move {
        if let Some(addr) = health {
            run(addr, health_app).await;
        }
    };
    let m = async move {
        if let Some(addr) = metrics_addr {
            run(addr, metrics_app).await;
        }
    };
    tokio::join!(h, m);
}

async fn run(addr: SocketAddr, app: Router) {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(%addr, error = %e, "HTTP endpoint stopped");
            }
        }
        Err(e) => warn!(%addr, error = %e, "cannot listen for health/metrics; continuing without"),
    }
}
