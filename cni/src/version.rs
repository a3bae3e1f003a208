//! CNI spec versions: what we accept and answer in, and the VERSION reply.

use serde_json::json;

use crate::error::{CniError, Result, code};

/// The versions we speak, oldest first. Results are shaped for the version the config
/// asks for (before 1.0.0, `ips[]` carry `"version":"4"`).
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// The version we answer in when a request names none we can read.
pub const LATEST: &str = "1.0.0";

/// Checks that `requested` is one we speak.
pub fn check(requested: &str) -> Result<()> {
    if SUPPORTED.contains(&requested) {
        return Ok(());
    }
    Err(CniError::new(
        code::INCOMPATIBLE_VERSION,
        format!(
            "incompatible CNI versions; config is {requested:?}, plugin supports {SUPPORTED:?}"
        ),
        "",
    ))
}

/// True when results of `version` tag each IP with `"version":"4"|"6"` (spec < 1.0.0).
pub fn ips_carry_version(version: &str) -> bool {
    version != "1.0.0"
}

/// The VERSION reply: `{"cniVersion", "supportedVersions"}`.
pub fn reply(requested: Option<&str>) -> String {
    let v = requested
        .filter(|v| SUPPORTED.contains(v))
        .unwrap_or(LATEST);
    json!({"cniVersion": v, "supportedVersions": SUPPORTED}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_listed_versions_only() {
        assert!(check("0.3.1").is_ok());
        assert!(check("1.0.0").is_ok());
        let err = check("0.2.0").expect_err("too old");
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
        assert!(reply(Some("0.4.0")).contains(r#""cniVersion":"0.4.0""#));
        assert!(reply(None).contains(r#""supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]"#));
    }
}
