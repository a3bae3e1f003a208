//! uid and creationTimestamp for new resources.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A random (version 4) UUID, e.g. `1f0c9d2e-...`.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The current UTC time as RFC 3339 with second precision (`2024-05-01T10:00:00Z`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Formats seconds since the epoch as RFC 3339 (UTC, second precision).
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_uids() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
