//! The crate's one error type.

use thiserror::Error;

use crate::kv::Revision;

/// Everything a datastore operation or a resource validation can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// The key (or resource) does not exist.
    #[error("resource does not exist: {key}")]
    NotFound { key: String },
    /// A create found the key already there.
    #[error("resource already exists: {key}")]
    AlreadyExists { key: String },
    /// A compare-and-swap lost: the key's revision is no longer `expected`.
    #[error("update conflict: {key} (expected revision {expected}, found {actual})")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// A watch asked for a revision the store no longer keeps history for; relist and
    /// watch again from the listing's revision.
    #[error("revision {requested} has been compacted (oldest kept: {oldest})")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// A lease id that has expired or never existed.
    #[error("lease {0} not found or expired")]
    LeaseNotFound(i64),
    /// A resource failed validation. `field` is Calico's field path (`IPPool.Spec.CIDR`),
    /// `value` the offending value, `reason` Calico's message.
    #[error("error with field {field} = '{}' ({reason})", shorten(value))]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
    /// A stored value that cannot be decoded.
    #[error("cannot decode value of {key}: {reason}")]
    Decode { key: String, reason: String },
    /// The backend could not be reached or failed (etcd down, SQLite I/O error, ...).
    #[error("datastore error: {0}")]
    Backend(String),
    /// Bad datastore configuration (unknown DATASTORE_TYPE, unreadable certificate, ...).
    #[error("datastore configuration: {0}")]
    Config(String),
    /// A write failed without a definite answer and reading the key back failed too: it
    /// may or may not have been applied.
    #[error(
        "the write of {key} may or may not have been applied (the datastore failed: {cause}; reading it back failed: {read_back})"
    )]
    OutcomeUnknown {
        key: String,
        cause: String,
        read_back: String,
    },
}

impl Error {
    /// Whether a write that failed with this error may still have been applied: a timeout
    /// or a lost connection after the request left says nothing about the outcome; only a
    /// definite answer (a lost race, an invalid value) says it was not.
    pub fn may_have_applied(&self) -> bool {
        matches!(self, Error::Backend(_))
    }

    /// Convenience constructor for validation failures.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Error {
        Error::Invalid {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// True for errors worth retrying after a pause (the backend was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Backend(_))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A value as an error message quotes it: whole up to 200 characters, else its start and
/// its length (a 10,000-character selector would drown the message).
fn shorten(value: &str) -> String {
    const KEEP: usize = 200;
    let len = value.chars().count();
    if len <= KEEP {
        return value.to_string();
    }
    let start: String = value.chars().take(KEEP).collect();
    format!("{start}... ({len} characters)")
}
