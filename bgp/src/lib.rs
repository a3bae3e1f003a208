//! An embeddable BGP-4 speaker (placeholder docs, filled in below as the crate grows).

pub mod error;
pub mod fsm;
pub mod prefix;
pub mod wire;

pub use error::Error;
pub use prefix::{Afi, Prefix, Prefix4, Prefix6, PrefixKey};
