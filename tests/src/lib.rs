//! The lab harness: hosts built from Linux network namespaces on one machine, shared by the
//! end-to-end tests and the demo. See design.md "Labs": nothing is ever added to the root
//! namespace, every namespace and process is removed on drop, leftovers of dead runs are
//! removed at start.

pub mod bgp_peers;
pub mod bins;
pub mod bird_cfg;
pub mod chaos;
pub mod cluster;
pub mod cni;
pub mod etcd;
pub mod netlink;
pub mod netns;
pub mod ping;
pub mod reflectors;
pub mod routers;
pub mod stall_proxy;
pub mod tor;
pub mod vm;

pub use etcd::{EtcdServer, TestEtcd, TestPki};
pub use netns::{Daemon, Netns, remove_leftovers, veth, wait_until};
