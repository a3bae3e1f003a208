//! Kernel errors, classified by errno so callers react without parsing text.

use thiserror::Error;

/// Why a netlink request failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The object already exists (EEXIST), with the kernel's message.
    #[error("{0}")]
    Exists(String),
    /// The object (or the device it refers to) is not there (ENOENT, ESRCH, ENODEV).
    #[error("not found: {0}")]
    NotFound(String),
    /// The route's gateway is not directly reachable (ENETUNREACH): a BGP next hop on
    /// another subnet with no encapsulation. Retrying is pointless until the underlay
    /// changes, which a kernel route event announces.
    #[error("gateway unreachable: {0}")]
    Unreachable(String),
    /// The kernel lacks a feature (EOPNOTSUPP, or the ipip module missing), with what
    /// says which.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else, with the kernel's message.
    #[error("{0}")]
    Other(String),
}

impl From<rtnetlink::Error> for Error {
    fn from(e: rtnetlink::Error) -> Error {
        if let rtnetlink::Error::NetlinkError(msg) = &e
            && let Some(code) = msg.code
        {
            return match -code.get() {
                libc::EEXIST => Error::Exists(e.to_string()),
                libc::ENOENT | libc::ESRCH | libc::ENODEV => Error::NotFound(e.to_string()),
                libc::EOPNOTSUPP => Error::Unsupported(e.to_string()),
                libc::ENETUNREACH => Error::Unreachable(e.to_string()),
                _ => Error::Other(e.to_string()),
            };
        }
        Error::Other(e.to_string())
    }
}

impl Error {
    /// `Ok` for [`Error::NotFound`]: for deletions, where already gone is done.
    pub fn ignore_not_found(self) -> Result<(), Error> {
        match self {
            Error::NotFound(_) => Ok(()),
            other => Err(other),
        }
    }
}
