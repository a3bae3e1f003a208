//! projectcalico.org/v3 resources and the IPAM storage objects.

pub mod ipam;
