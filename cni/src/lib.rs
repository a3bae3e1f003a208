//! The calico and calico-ipam CNI plugins.
