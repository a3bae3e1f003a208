//! Plugin logging: stdout carries the result, so logs go to stderr (or `log_file_path`),
//! at `log_level` (default `warn`; `CALICO_CNI_LOG` overrides for debugging).

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::NetConf;

/// Installs the subscriber once; later calls are no-ops.
pub fn init(conf: Option<&NetConf>) {
    let level = std::env::var("CALICO_CNI_LOG")
        .ok()
        .or_else(|| {
            conf.map(|c| c.log_level.to_lowercase())
                .filter(|l| !l.is_empty())
        })
        .unwrap_or_else(|| "warn".to_string());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("warn"));
    let file = conf
        .map(|c| c.log_file_path.as_str())
        .filter(|p| !p.is_empty())
        .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    let _ = match file {
        Some(f) => builder.with_writer(Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
