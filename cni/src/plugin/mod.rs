//! The two plugins: `calico` (pod wiring + endpoint record; Calico IPAM run in process,
//! other IPAMs delegated) and `calico-ipam` (addresses from Calico IPAM by handle).

pub mod calico;
pub mod calico_ipam;

pub use calico::CalicoPlugin;
pub use calico_ipam::CalicoIpamPlugin;
