//! The rtnetlink layer calico-node's dataplane and the CNI plugin share: one connection
//! type with the requests both make ([`Rtnl`]; main-table route dumps on a socket of
//! their own, read in place), the readers of the kernel's link, address
//! and route messages ([`parse`]), and kernel errors classified by errno ([`Error`]).
//! What only one of them does (VXLAN devices, neighbours and FDB entries for the agent,
//! veth pairs across namespaces for the plugin) stays with it, built on [`Rtnl::handle`].

mod conn;
mod dump;
mod error;
pub mod parse;

pub use conn::{LinkSettings, Rtnl};
pub use error::Error;
