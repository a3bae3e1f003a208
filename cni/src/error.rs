//! CNI errors: the spec's error object (`{"cniVersion","code","msg","details"}`) printed on
//! stdout with a non-zero exit, with the spec's codes and a message a person can act on.

use std::fmt;

use serde::Serialize;

/// The error codes of the CNI spec (0-99) and ours (100+).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid or missing environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failure to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later (the datastore is unreachable).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// IPAM could not allocate (pools exhausted, block limit, no usable pool).
    pub const IPAM_FAILURE: u32 = 100;
    /// Kernel wiring failed (veth, address, route, sysctl).
    pub const DATAPLANE_FAILURE: u32 = 101;
    /// The datastore rejected a write (endpoint record).
    pub const DATASTORE_FAILURE: u32 = 102;
    /// CHECK found the wiring not as ADD left it.
    pub const CHECK_FAILED: u32 = 103;
    /// The delegated IPAM plugin could not be run or failed.
    pub const DELEGATE_FAILURE: u32 = 104;
}

/// One CNI error: a code, a one-line message and details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    /// An error with `code`, message and details.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Code 4: missing or invalid environment variables.
    pub fn env(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_ENV, msg, "")
    }

    /// Code 7: invalid network configuration.
    pub fn config(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_CONFIG, msg, "")
    }

    /// Code 101: the kernel refused something.
    pub fn dataplane(msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError::new(code::DATAPLANE_FAILURE, msg, details)
    }

    /// The JSON object the spec wants on stdout.
    pub fn to_json(&self, cni_version: &str) -> String {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
        .to_string()
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{} (code {})", self.msg, self.code)
        } else {
            write!(f, "{}: {} (code {})", self.msg, self.details, self.code)
        }
    }
}

impl std::error::Error for CniError {}

impl From<ipam::Error> for CniError {
    fn from(e: ipam::Error) -> CniError {
        if e.is_transient() {
            return CniError::new(
                code::TRY_AGAIN_LATER,
                "the Calico datastore is unreachable; try again later",
                e.to_string(),
            );
        }
        match e {
            ipam::Error::UnknownPool { .. }
            | ipam::Error::InvalidHandle(_)
            | ipam::Error::InvalidNode(_) => CniError::new(code::INVALID_CONFIG, e.to_string(), ""),
            other => CniError::new(code::IPAM_FAILURE, other.to_string(), ""),
        }
    }
}

impl From<datastore::Error> for CniError {
    fn from(e: datastore::Error) -> CniError {
        if e.is_transient() {
            CniError::new(
                code::TRY_AGAIN_LATER,
                "the Calico datastore is unreachable; try again later",
                e.to_string(),
            )
        } else {
            CniError::new(code::DATASTORE_FAILURE, e.to_string(), "")
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = CniError> = std::result::Result<T, E>;
