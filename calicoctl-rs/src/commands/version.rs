//! `calicoctl version`: client version and commit, cluster version and type from
//! ClusterInformation `default`.

use datastore::Client;
use datastore::model::ClusterInformation;

use crate::error::CliResult;

/// Runs `version`.
pub async fn run(config: Option<&str>) -> CliResult {
    println!("{:<19}v{}", "Client Version:", env!("CARGO_PKG_VERSION"));
    println!(
        "{:<19}{}",
        "Git commit:",
        option_env!("CALICOCTL_GIT_COMMIT").unwrap_or("unknown")
    );
    let info = match crate::config::connect(config).await {
        Ok(store) => Client::new(store)
            .try_get::<ClusterInformation>("default")
            .await
            .ok()
            .flatten(),
        Err(_) => None,
    };
    let (version, ctype) = match info {
        Some(ci) => (ci.spec.calico_version, ci.spec.cluster_type),
        None => (String::new(), String::new()),
    };
    let or_unknown = |s: String| {
        if s.is_empty() {
            "unknown".to_string()
        } else {
            s
        }
    };
    println!("{:<19}{}", "Cluster Version:", or_unknown(version));
    println!("{:<19}{}", "Cluster Type:", or_unknown(ctype));
    Ok(())
}
