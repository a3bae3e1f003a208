//! calico-node and the CNI plugins.
