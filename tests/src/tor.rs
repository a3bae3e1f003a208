//! The lab's top-of-rack router: one namespace on subnet 0 at 10.0.0.253 (and fd00::253 in a
//! dual-stack lab), AS 65001, a BIRD / FRR / GoBGP peering with every node over eBGP (BIRD,
//! FRR and GoBGP also over IPv6, a session per family as Calico's), and the Calico resources that turn
//! the node-to-node mesh off and peer every node with it.

use anyhow::Result;

use crate::bgp_peers::{NeighborSpec, Router, RouterKind, RouterSpec};
use crate::cluster::Cluster;

/// The ToR's address on subnet 0.
pub const TOR_IP: &str = "10.0.0.253";
/// The ToR's IPv6 address on subnet 0 in a dual-stack lab.
pub const TOR_IP6: &str = "fd00::253";
/// The ToR's AS; the nodes are in 64512.
pub const TOR_AS: u32 = 65001;

/// BGPConfiguration (mesh off, AS 64512) and the global BGPPeer to the ToR.
pub const TOR_PEERING: &str = "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.253, asNumber: 65001, numAllowedLocalASNumbers: 1}
";

/// The global BGPPeer to the ToR's IPv6 address, applied with [`TOR_PEERING`] in a
/// dual-stack lab.
pub const TOR_PEERING_V6: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor-v6}
spec: {peerIP: 'fd00::253', asNumber: 65001, numAllowedLocalASNumbers: 1}
";

/// A ToR peering with every node of `c` (next hop self, so pod traffic crosses it),
/// installing what it learns, originating nothing, no BFD; in a dual-stack lab also with
/// every node's IPv6 address (a BIRD or FRR ToR then has a session per family).
pub fn tor_spec(c: &Cluster) -> RouterSpec {
    RouterSpec {
        router_id: TOR_IP.into(),
        asn: TOR_AS,
        ipv6: c.is_dual_stack().then(|| TOR_IP6.to_string()),
        neighbors: c
            .nodes
            .iter()
            .flat_map(|n| std::iter::once(n.ip()).chain(n.ip6()))
            .map(|address| NeighborSpec {
                next_hop_self: true,
                ..NeighborSpec::new(address, 64512)
            })
            .collect(),
        routes4: vec![],
        routes6: vec![],
        install_routes: true,
        bfd: None,
    }
}

impl Cluster {
    /// Starts `kind` with `spec` as the ToR in a new namespace on subnet 0 (forwarding on);
    /// returns the namespace's index ([`Cluster::extra`]) and the router.
    pub fn start_tor(&mut self, kind: RouterKind, spec: RouterSpec) -> Result<(usize, Router)> {
        let tor = self.extra_namespace("tor")?;
        self.attach_extra(tor, "eth0", 0, &format!("{TOR_IP}/24"))?;
        self.extra(tor).sh("sysctl -qw net.ipv4.ip_forward=1")?;
        if self.is_dual_stack() {
            let ns = self.extra(tor);
            let address = format!("{TOR_IP6}/64");
            ns.ip(&["-6", "addr", "add", &address, "dev", "eth0", "nodad"])?;
            ns.sh("sysctl -qw net.ipv6.conf.all.forwarding=1")?;
        }
        let router = Router::start(kind, self.extra(tor), &self.path().join("tor"), spec)?;
        Ok((tor, router))
    }
}
