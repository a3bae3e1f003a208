//! The clock lease deadlines are kept in: `CLOCK_BOOTTIME` in milliseconds, the same for every
//! process on the host and never stepped by NTP. It restarts at zero after a reboot, so the
//! store records the kernel's boot id and re-arms every lease when the boot id changes (as
//! etcd renews leases when a new leader takes over).

use nix::time::{ClockId, clock_gettime};

use crate::error::{Error, Result};

/// Milliseconds since boot, including time spent suspended.
pub(super) fn now_ms() -> Result<i64> {
    let ts = clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map_err(|e| Error::Backend(format!("clock_gettime(CLOCK_BOOTTIME): {e}")))?;
    Ok(ts.tv_sec() * 1000 + ts.tv_nsec() / 1_000_000)
}

/// The kernel's id of the current boot (`/proc/sys/kernel/random/boot_id`); empty when
/// unreadable, which makes lease deadlines survive as they are.
pub(super) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
