//! Read views named after RFC 4271 §3.2: [`AdjRibIn`] and [`LocRib`] over the shared path
//! table, [`AdjRibOut`] over a peer's sent-routes table.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::Rib;
use super::attrs::AttrId;
use super::paths::prefixes_of;
use super::table::PF_REJECTED;
use crate::prefix::{Prefix, Prefix4, Prefix6};
use crate::wire::PathAttrs;

/// Read view: the Adj-RIB-In of one peer (paths it sent, after import).
pub struct AdjRibIn<'a> {
    rib: &'a Rib,
    peer: u16,
}

impl<'a> AdjRibIn<'a> {
    /// The view of peer `idx`.
    pub fn of(rib: &'a Rib, peer: u16) -> AdjRibIn<'a> {
        AdjRibIn { rib, peer }
    }

    /// IPv4 prefixes received from the peer and accepted.
    pub fn accepted_v4(&self) -> Vec<Prefix4> {
        prefixes_of(&self.rib.v4, self.peer, |p| p.flags & PF_REJECTED == 0)
    }

    /// IPv6 prefixes received from the peer and accepted.
    pub fn accepted_v6(&self) -> Vec<Prefix6> {
        prefixes_of(&self.rib.v6, self.peer, |p| p.flags & PF_REJECTED == 0)
    }
}

/// Read view: the Loc-RIB (best path per destination).
pub struct LocRib<'a> {
    rib: &'a Rib,
}

impl<'a> LocRib<'a> {
    /// The view.
    pub fn of(rib: &'a Rib) -> LocRib<'a> {
        LocRib { rib }
    }

    /// The best path's attributes and peer address (`None` = local) for `net`.
    pub fn best(&self, net: IpNet) -> Option<(Option<IpAddr>, Arc<PathAttrs>)> {
        self.rib
            .explain(net)
            .into_iter()
            .find(|p| p.best)
            .map(|p| (p.from_peer, p.attrs))
    }
}

/// Read view: what was advertised to one peer.
pub struct AdjRibOut<'a> {
    rib: &'a Rib,
    peer: u16,
}

impl<'a> AdjRibOut<'a> {
    /// The view of peer `idx`.
    pub fn of(rib: &'a Rib, peer: u16) -> AdjRibOut<'a> {
        AdjRibOut { rib, peer }
    }

    /// Attributes advertised for `net`, if any.
    pub fn get(&self, net: IpNet) -> Option<Arc<PathAttrs>> {
        let p = self.rib.peer(self.peer)?;
        let id = match Prefix::from(net) {
            Prefix::V4(x) => p.out4.adj.get(&x).map(|s| s.value),
            Prefix::V6(x) => p.out6.adj.get(&x).map(|s| s.value),
        }?;
        Some(self.rib.attrs.get(AttrId(id)).clone())
    }

    /// Number of prefixes advertised.
    pub fn len(&self) -> usize {
        self.rib
            .peer(self.peer)
            .map_or(0, |p| p.advertised() as usize)
    }

    /// True when nothing is advertised.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
