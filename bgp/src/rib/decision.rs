//! Best-path selection (RFC 4271 §9.1.2.2, RFC 4456 §9), weight-free, as an elimination
//! over the candidates so every loser keeps the step it lost at ([`RejectReason`]).
//!
//! Order: locally originated routes first; highest LOCAL_PREF (100 when absent); shortest
//! AS_PATH; lowest ORIGIN; lowest MED among routes from the same neighbouring AS (absent =
//! 0); eBGP over iBGP; lowest BGP identifier (ORIGINATOR_ID when present); shortest
//! CLUSTER_LIST; lowest peer address.

use std::net::{IpAddr, Ipv4Addr};

use crate::events::RejectReason;
use crate::wire::PathAttrs;

/// One path as the decision process sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Originated by this speaker.
    pub local: bool,
    /// Its attributes.
    pub attrs: &'a PathAttrs,
    /// Learned over eBGP.
    pub ebgp: bool,
    /// The peer's BGP identifier.
    pub peer_router_id: Ipv4Addr,
    /// The peer's address.
    pub peer_addr: IpAddr,
}

impl Candidate<'_> {
    fn local_pref(&self) -> u32 {
        self.attrs.local_pref.unwrap_or(100)
    }
    fn router_id(&self) -> u32 {
        u32::from(self.attrs.originator_id.unwrap_or(self.peer_router_id))
    }
}

/// Runs the decision process. Returns the index of the best candidate and, for each
/// candidate, the reason it lost ([`RejectReason::None`] for the winner).
pub fn select(c: &[Candidate<'_>]) -> (usize, Vec<RejectReason>) {
    let mut reason = vec![RejectReason::None; c.len()];
    let mut alive: Vec<usize> = (0..c.len()).collect();

    fn keep_best<K: Ord + Copy>(
        alive: &mut Vec<usize>,
        reason: &mut [RejectReason],
        why: RejectReason,
        key: impl Fn(usize) -> K,
    ) {
        if alive.len() < 2 {
            return;
        }
        let Some(best) = alive.iter().map(|&i| key(i)).min() else {
            return;
        };
        alive.retain(|&i| {
            let k = key(i) == best;
            if !k {
                reason[i] = why;
            }
            k
        });
    }

    use std::cmp::Reverse;
    keep_best(
        &mut alive,
        &mut reason,
        RejectReason::LocalRoutePreferred,
        |i| !c[i].local,
    );
    keep_best(&mut alive, &mut reason, RejectReason::LocalPref, |i| {
        Reverse(c[i].local_pref())
    });
    keep_best(&mut alive, &mut reason, RejectReason::AsPathLength, |i| {
        c[i].attrs.as_path_len()
    });
    keep_best(&mut alive, &mut reason, RejectReason::Origin, |i| {
        c[i].attrs.origin
    });
    // MED (§9.1.2.2 c): only routes from the same neighbouring AS are compared.
    if alive.len() > 1 {
        let snapshot = alive.clone();
        alive.retain(|&i| {
            let nas = c[i].attrs.neighbor_as();
            let med = c[i].attrs.med.unwrap_or(0);
            let beaten = snapshot.iter().any(|&j| {
                j != i && c[j].attrs.neighbor_as() == nas && c[j].attrs.med.unwrap_or(0) < med
            });
            if beaten {
                reason[i] = RejectReason::Med;
            }
            !beaten
        });
    }
    keep_best(&mut alive, &mut reason, RejectReason::PeerType, |i| {
        !c[i].ebgp
    });
    keep_best(&mut alive, &mut reason, RejectReason::RouterId, |i| {
        c[i].router_id()
    });
    keep_best(
        &mut alive,
        &mut reason,
        RejectReason::ClusterListLength,
        |i| c[i].attrs.cluster_list.len(),
    );
    keep_best(&mut alive, &mut reason, RejectReason::PeerAddress, |i| {
        c[i].peer_addr
    });
    let winner = alive.first().copied().unwrap_or(0);
    for &i in alive.iter().skip(1) {
        reason[i] = RejectReason::PeerAddress;
    }
    (winner, reason)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::wire::Origin;

    fn attrs(path: &[u32]) -> PathAttrs {
        PathAttrs {
            as_path: Arc::from(path.to_vec()),
            ..PathAttrs::default()
        }
    }

    fn cand(a: &PathAttrs, last_octet: u8) -> Candidate<'_> {
        Candidate {
            local: false,
            attrs: a,
            ebgp: true,
            peer_router_id: Ipv4Addr::new(10, 0, 0, last_octet),
            peer_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)),
        }
    }

    #[test]
    fn locally_originated_route_beats_any_learned_route() {
        let a = attrs(&[]);
        let b = PathAttrs {
            local_pref: Some(500),
            ..attrs(&[])
        };
        let mut local = cand(&a, 9);
        local.local = true;
        let (w, r) = select(&[cand(&b, 1), local]);
        assert_eq!(w, 1);
        assert_eq!(r[0], RejectReason::LocalRoutePreferred);
    }

    #[test]
    fn highest_local_pref_wins() {
        let a = PathAttrs {
            local_pref: Some(200),
            ..attrs(&[65001, 65002, 65003])
        };
        let b = attrs(&[65001]);
        let (w, r) = select(&[cand(&b, 1), cand(&a, 2)]);
        assert_eq!((w, r[0]), (1, RejectReason::LocalPref));
    }

    #[test]
    fn shortest_as_path_wins() {
        let a = attrs(&[65001, 65002]);
        let b = attrs(&[65003]);
        let (w, r) = select(&[cand(&a, 1), cand(&b, 2)]);
        assert_eq!((w, r[0]), (1, RejectReason::AsPathLength));
    }

    #[test]
    fn lowest_origin_wins() {
        let a = PathAttrs {
            origin: Origin::Incomplete,
            ..attrs(&[65001])
        };
        let b = PathAttrs {
            origin: Origin::Egp,
            ..attrs(&[65002])
        };
        let (w, r) = select(&[cand(&a, 1), cand(&b, 2)]);
        assert_eq!((w, r[0]), (1, RejectReason::Origin));
    }

    #[test]
    fn lowest_med_wins_among_routes_from_the_same_neighbour_as() {
        let a = PathAttrs {
            med: Some(50),
            ..attrs(&[65001, 65100])
        };
        let b = PathAttrs {
            med: Some(10),
            ..attrs(&[65001, 65200])
        };
        let (w, r) = select(&[cand(&a, 1), cand(&b, 2)]);
        assert_eq!((w, r[0]), (1, RejectReason::Med));
    }

    #[test]
    fn med_is_not_compared_across_neighbour_ases() {
        let a = PathAttrs {
            med: Some(50),
            ..attrs(&[65001])
        };
        let b = PathAttrs {
            med: Some(10),
            ..attrs(&[65002])
        };
        // Falls through to the router id: 10.0.0.1 wins despite its higher MED.
        let (w, r) = select(&[cand(&a, 1), cand(&b, 2)]);
        assert_eq!((w, r[1]), (0, RejectReason::RouterId));
    }

    #[test]
    fn ebgp_route_beats_ibgp_route() {
        let a = attrs(&[65001]);
        let b = attrs(&[65002]);
        let mut ibgp = cand(&a, 1);
        ibgp.ebgp = false;
        let (w, r) = select(&[ibgp, cand(&b, 2)]);
        assert_eq!((w, r[0]), (1, RejectReason::PeerType));
    }

    #[test]
    fn lowest_router_id_wins() {
        let a = attrs(&[65001]);
        let b = attrs(&[65002]);
        let mut x = cand(&a, 5);
        x.peer_router_id = Ipv4Addr::new(9, 9, 9, 9);
        let mut y = cand(&b, 6);
        y.peer_router_id = Ipv4Addr::new(1, 1, 1, 1);
        let (w, r) = select(&[x, y]);
        assert_eq!((w, r[0]), (1, RejectReason::RouterId));
    }

    #[test]
    fn originator_id_replaces_the_router_id_for_reflected_routes() {
        let a = PathAttrs {
            originator_id: Some(Ipv4Addr::new(10, 0, 0, 200)),
            ..attrs(&[])
        };
        let b = PathAttrs {
            originator_id: Some(Ipv4Addr::new(10, 0, 0, 100)),
            ..attrs(&[])
        };
        let (x, y) = (cand(&a, 1), cand(&b, 2));
        let (w, r) = select(&[x, y]);
        assert_eq!((w, r[0]), (1, RejectReason::RouterId));
    }

    #[test]
    fn shorter_cluster_list_wins() {
        let id = Some(Ipv4Addr::new(10, 0, 0, 50));
        let a = PathAttrs {
            originator_id: id,
            cluster_list: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)],
            ..attrs(&[])
        };
        let b = PathAttrs {
            originator_id: id,
            cluster_list: vec![Ipv4Addr::new(3, 3, 3, 3)],
            ..attrs(&[])
        };
        let (w, r) = select(&[cand(&a, 1), cand(&b, 2)]);
        assert_eq!((w, r[0]), (1, RejectReason::ClusterListLength));
    }

    #[test]
    fn lowest_peer_address_breaks_the_last_tie() {
        let a = attrs(&[65001]);
        let mut x = cand(&a, 7);
        let mut y = cand(&a, 3);
        x.peer_router_id = Ipv4Addr::new(1, 1, 1, 1);
        y.peer_router_id = Ipv4Addr::new(1, 1, 1, 1);
        let (w, r) = select(&[x, y]);
        assert_eq!((w, r[0]), (1, RejectReason::PeerAddress));
    }

    #[test]
    fn a_single_candidate_wins_without_reasons() {
        let a = attrs(&[65001]);
        assert_eq!(select(&[cand(&a, 1)]), (0, vec![RejectReason::None]));
    }
}
