//! Calico's documented route-reflector setup for the labs: a node made a reflector (the
//! `route-reflector: "true"` label and a cluster ID on its Node), the BGPPeer peering every
//! node with the reflectors, and the node-to-node mesh off.

use anyhow::{Result, bail};

use crate::cluster::Cluster;

/// The BGPPeer `peer-with-route-reflectors` and the BGPConfiguration turning the mesh off.
pub const RR_PEERING: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-route-reflectors}
spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
";

impl Cluster {
    /// Makes node `i` a route reflector of `cluster_id` by `calicoctl patch node`.
    pub fn make_route_reflector(&self, i: usize, cluster_id: &str) -> Result<()> {
        let patch = format!(
            r#"{{"metadata":{{"labels":{{"route-reflector":"true"}}}},"spec":{{"bgp":{{"routeReflectorClusterID":"{cluster_id}"}}}}}}"#
        );
        let out = self.calicoctl(i, &["patch", "node", &self.nodes[i].name, "-p", &patch])?;
        if !out.status.success() {
            bail!(
                "calicoctl patch node {}: {}{}",
                self.nodes[i].name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}
