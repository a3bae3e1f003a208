//! The `calico` and `calico-ipam` CNI plugins (CNI spec 1.0.0; 0.3.x and 0.4.0 configs
//! answered in their own version), shaped like Calico's: IPAM delegated to `calico-ipam`,
//! pods wired with a `cali…` veth, proxy ARP and 169.254.1.1, a WorkloadEndpoint recorded.
//!
//! - [`skel`]: the entry point both binaries run; [`plugin`]: the two plugins;
//! - [`config`], [`env`], [`result`], [`error`], [`version`]: the CNI contract;
//! - [`wiring`], [`netlink`], [`netns`], [`sysctl`]: the kernel side;
//! - [`names`], [`endpoint`], [`delegate`], [`store`]: Calico's names and records;
//! - [`flannel_ipam`]: addresses from the node's flannel subnet in flannel mode.

pub mod config;
pub mod delegate;
pub mod endpoint;
pub mod env;
pub mod error;
pub mod flannel_ipam;
pub mod lock;
pub mod logging;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod plugin;
pub mod result;
pub mod skel;
pub mod store;
pub mod sysctl;
pub mod version;
pub mod wiring;

pub use error::{CniError, Result};
