//! [`EtcdOptions`]: where etcd is and how to talk to it, and turning that into etcd-client's
//! [`ConnectOptions`] (TLS material read from the files here, so a bad path fails at connect
//! with the file named).

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::error::{Error, Result};

/// How to reach etcd: endpoints, TLS client certificates, and the timeouts that keep every
/// call bounded when etcd is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs (`http://10.0.0.1:2379`, `https://...`); a URL without scheme is taken
    /// as `http://`, or `https://` when TLS files are given.
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) the server's certificate must chain to (`ETCD_CA_CERT_FILE`).
    pub ca_cert_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to etcd (`ETCD_CERT_FILE`).
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate (PEM) (`ETCD_KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// How long one endpoint gets to accept a connection. Default 3 s.
    pub connect_timeout: Duration,
    /// How long any one call (and the start of a watch) may take. Default 5 s.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    /// Plain-text endpoints and the default timeouts.
    pub fn new(endpoints: Vec<String>) -> EtcdOptions {
        EtcdOptions {
            endpoints,
            ca_cert_file: None,
            cert_file: None,
            key_file: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// True when any TLS file is set.
    pub fn uses_tls(&self) -> bool {
        self.ca_cert_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// The endpoints with their scheme made explicit, checked against the TLS settings.
    pub(super) fn urls(&self) -> Result<Vec<String>> {
        if self.endpoints.is_empty() {
            return Err(Error::Config(
                "ETCD_ENDPOINTS: no etcd endpoint given".into(),
            ));
        }
        let tls = self.uses_tls();
        self.endpoints
            .iter()
            .map(|e| {
                let e = e.trim();
                if e.is_empty() {
                    return Err(Error::Config("ETCD_ENDPOINTS: empty endpoint".into()));
                }
                let url = if e.contains("://") {
                    e.to_string()
                } else if tls {
                    format!("https://{e}")
                } else {
                    format!("http://{e}")
                };
                if tls && url.starts_with("http://") {
                    return Err(Error::Config(format!(
                        "ETCD_ENDPOINTS: {url} is plain http but TLS certificate files are \
                         set; use an https:// endpoint"
                    )));
                }
                if !tls && url.starts_with("https://") {
                    return Err(Error::Config(format!(
                        "ETCD_CA_CERT_FILE: {url} is https but no CA certificate file is set \
                         (this build has no system trust store)"
                    )));
                }
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(Error::Config(format!(
                        "ETCD_ENDPOINTS: {url}: only http:// and https:// endpoints are supported"
                    )));
                }
                Ok(url)
            })
            .collect()
    }

    /// etcd-client's options: timeouts, HTTP/2 keep-alive (so a dead peer breaks watches),
    /// leader required (a member cut off from its cluster fails instead of serving stale
    /// data), and TLS.
    pub(super) fn connect_options(&self) -> Result<ConnectOptions> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_require_leader(true);
        if self.uses_tls() {
            let mut tls = TlsOptions::new();
            match &self.ca_cert_file {
                Some(ca) => {
                    tls = tls.ca_certificate(Certificate::from_pem(read(
                        ca,
                        "ETCD_CA_CERT_FILE (etcdCACertFile)",
                    )?))
                }
                None => {
                    return Err(Error::Config(
                        "ETCD_CA_CERT_FILE: required with ETCD_CERT_FILE/ETCD_KEY_FILE (this \
                         build has no system trust store)"
                            .into(),
                    ));
                }
            }
            match (&self.cert_file, &self.key_file) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(
                        read(cert, "ETCD_CERT_FILE (etcdCertFile)")?,
                        read(key, "ETCD_KEY_FILE (etcdKeyFile)")?,
                    ));
                }
                (None, None) => {}
                (Some(_), None) => {
                    return Err(Error::Config(
                        "ETCD_KEY_FILE: required when ETCD_CERT_FILE is set".into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(Error::Config(
                        "ETCD_CERT_FILE: required when ETCD_KEY_FILE is set".into(),
                    ));
                }
            }
            opts = opts.with_tls(tls);
        }
        Ok(opts)
    }
}

fn read(path: &Path, var: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("{var}: cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_scheme_and_must_match_tls() {
        let plain = EtcdOptions::new(vec!["10.0.0.1:2379".into(), "http://h:2379".into()]);
        assert_eq!(
            plain.urls().expect("urls"),
            ["http://10.0.0.1:2379", "http://h:2379"]
        );
        let tls = EtcdOptions {
            ca_cert_file: Some("/ca.pem".into()),
            ..EtcdOptions::new(vec!["10.0.0.1:2379".into()])
        };
        assert_eq!(tls.urls().expect("urls"), ["https://10.0.0.1:2379"]);
        let mixed = EtcdOptions {
            endpoints: vec!["http://10.0.0.1:2379".into()],
            ..tls
        };
        assert!(matches!(mixed.urls(), Err(Error::Config(m)) if m.contains("https://")));
        assert!(matches!(
            EtcdOptions::new(vec![]).urls(),
            Err(Error::Config(m)) if m.starts_with("ETCD_ENDPOINTS")
        ));
    }

    #[test]
    fn unreadable_certificate_names_the_variable_and_file() {
        let opts = EtcdOptions {
            ca_cert_file: Some("/nonexistent/ca.pem".into()),
            ..EtcdOptions::new(vec!["https://h:2379".into()])
        };
        match opts.connect_options() {
            Err(Error::Config(m)) => {
                assert!(
                    m.contains("ETCD_CA_CERT_FILE (etcdCACertFile)")
                        && m.contains("/nonexistent/ca.pem"),
                    "{m}"
                )
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
