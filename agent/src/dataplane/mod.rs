//! The Linux dataplane: desired kernel state in, netlink operations out.
//!
//! - [`types`]: routes, devices, neighbours, FDB entries as plain values;
//! - [`kernel`]: the kernel behind a trait; [`netlink`] implements it with rtnetlink,
//!   [`fake`] in memory for tests;
//! - [`ownership`]: what calico-rs may touch;
//! - [`delta`]: desired versus dataplane views;
//! - [`owned_table`]: the reconciler of every kind of object but routes, the kinds in
//!   [`objects`] (devices, workload sysctls, neighbours, FDB entries);
//! - [`route_table`]: the route reconciler;
//! - [`nat`]: the natOutgoing reconciler (ipsets and nat chains), through [`netfilter`];
//! - [`apply`]: all of them in dependency order.

pub mod apply;
pub mod delta;
pub mod fake;
pub mod kernel;
pub mod nat;
pub mod netfilter;
pub mod netlink;
pub mod objects;
pub mod owned_table;
pub mod ownership;
pub mod route_table;
pub mod types;
