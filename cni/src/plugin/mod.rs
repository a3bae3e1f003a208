//! The two plugins: `calico` (pod wiring + endpoint record, IPAM delegated) and
//! `calico-ipam` (addresses from Calico IPAM by handle).

pub mod calico;
pub mod calico_ipam;

pub use calico::CalicoPlugin;
pub use calico_ipam::CalicoIpamPlugin;
