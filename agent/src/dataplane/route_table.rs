//! The route reconciler: keeps the kernel's owned routes equal to the desired set.
//!
//! A pass dumps the main table (the table is small and the dump is one netlink round trip),
//! splits it into owned and foreign routes with the [`OwnershipPolicy`], deletes owned
//! routes nobody wants, then adds or replaces what is missing or different. Passes run on
//! every desired-state change, on every kernel route/link event (so a route deleted by
//! hand is back within milliseconds) and on a slow timer; a pass for a desired-state change
//! with no kernel event since the last dump skips the dump
//! ([`reconcile_with`](RouteTable::reconcile_with)), and the notifications that echo the
//! table's own writes ask for none ([`already_knows`](RouteTable::already_knows)).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipnet::IpNet;
use tracing::{debug, warn};

use super::delta::DeltaTracker;
use super::kernel::{Kernel, KernelError, RouteNotice};
use super::ownership::OwnershipPolicy;
use super::types::{Route, RouteTarget};

/// How long an unknown `cali*` route is left alone: the CNI plugin adds it before the
/// agent hears of the WorkloadEndpoint.
pub const WORKLOAD_ROUTE_GRACE: Duration = Duration::from_secs(10);

/// Route writes a pass keeps in flight at once.
const WRITES_IN_FLIGHT: usize = 64;

/// What one reconcile pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteReport {
    pub added: usize,
    pub removed: usize,
    /// Desired routes whose destination is held by a route we do not own.
    pub conflicts: Vec<IpNet>,
    /// Operations that failed and will be retried on the next pass.
    pub failures: Vec<String>,
    /// Desired routes the kernel refused because their gateway is not reachable.
    pub unreachable: Vec<IpNet>,
    /// When a pass is needed again without any new event (grace periods, failures).
    pub retry_at: Option<Instant>,
}

/// Owns the routes calico-rs programs in the main table.
pub struct RouteTable {
    policy: OwnershipPolicy,
    tracker: DeltaTracker<IpNet, Route>,
    foreign: BTreeMap<IpNet, Route>,
    unknown_workload_since: HashMap<IpNet, Instant>,
    grace: Duration,
    hold_deletions: bool,
    /// Routes already reported as unreachable (warned about once).
    unreachable: std::collections::BTreeSet<IpNet>,
    /// The table has been read at least once (the dataplane view is meaningful).
    synced: bool,
}

impl RouteTable {
    /// A table with nothing desired yet.
    pub fn new(policy: OwnershipPolicy) -> RouteTable {
        RouteTable {
            policy,
            tracker: DeltaTracker::new(Route::is_satisfied_by),
            foreign: BTreeMap::new(),
            unknown_workload_since: HashMap::new(),
            grace: WORKLOAD_ROUTE_GRACE,
            hold_deletions: false,
            unreachable: std::collections::BTreeSet::new(),
            synced: false,
        }
    }

    /// Changes the grace period for unknown workload routes (tests use zero).
    pub fn with_grace(mut self, grace: Duration) -> RouteTable {
        self.grace = grace;
        self
    }

    /// Replaces the ownership policy (flannel host-gw adds its network).
    pub fn set_policy(&mut self, policy: OwnershipPolicy) {
        self.policy = policy;
    }

    /// While set, owned routes nobody wants are kept rather than deleted: after a restart,
    /// routes learned before it stay in the kernel (traffic keeps flowing) until BGP has
    /// re-learned them; stale ones go once the hold is lifted.
    pub fn set_hold_deletions(&mut self, hold: bool) {
        self.hold_deletions = hold;
    }

    /// Replaces the desired routes.
    pub fn set_desired(&mut self, routes: BTreeMap<IpNet, Route>) {
        self.tracker.set_desired(routes);
    }

    /// Changes some desired routes (`None`: no longer desired); true when any changed.
    pub fn update_desired(&mut self, changes: Vec<(IpNet, Option<Route>)>) -> bool {
        let mut changed = false;
        for (dst, route) in changes {
            changed |= self.tracker.update_desired(dst, route);
        }
        changed
    }

    /// The desired routes.
    pub fn desired(&self) -> &BTreeMap<IpNet, Route> {
        self.tracker.desired()
    }

    /// True when a route notification tells nothing the view of the table lacks: the
    /// echo of this table's own write or deletion (every write comes back as one), or a
    /// change already seen. Anything else means the table changed behind our back and the
    /// next pass must read it again.
    pub fn already_knows(&self, notice: &RouteNotice) -> bool {
        if !self.synced {
            return false;
        }
        let owned = self.tracker.dataplane();
        match notice {
            RouteNotice::Added(route) if self.policy.owns(route) => {
                !self.foreign.contains_key(&route.dst)
                    && owned
                        .get(&route.dst)
                        .is_some_and(|have| have.is_satisfied_by(route))
            }
            RouteNotice::Added(route) => {
                !owned.contains_key(&route.dst) && self.foreign.get(&route.dst) == Some(route)
            }
            RouteNotice::Removed(route) => {
                !owned.contains_key(&route.dst) && !self.foreign.contains_key(&route.dst)
            }
            RouteNotice::Elsewhere => true,
            RouteNotice::Unreadable => false,
        }
    }

    /// Brings the kernel in line with the desired routes, reading the table first.
    pub async fn reconcile<K: Kernel + ?Sized>(
        &mut self,
        kernel: &K,
        now: Instant,
    ) -> Result<RouteReport, KernelError> {
        self.reconcile_with(kernel, now, true).await
    }

    /// Like [`reconcile`](Self::reconcile), but with `resync` false the table is not read
    /// again (once it has been read at all): the view of the last dump plus this table's own
    /// writes is trusted. Callers pass false only when no kernel route or link event has
    /// arrived since the last dump, so a desired-state change costs its writes only.
    pub async fn reconcile_with<K: Kernel + ?Sized>(
        &mut self,
        kernel: &K,
        now: Instant,
        resync: bool,
    ) -> Result<RouteReport, KernelError> {
        if resync || !self.synced {
            self.synced = false;
            self.resync(kernel).await?;
            self.synced = true;
        }
        let mut report = RouteReport::default();

        for (dst, route) in self.tracker.pending_deletions() {
            if self.hold_deletions {
                continue;
            }
            if OwnershipPolicy::is_workload_route(&route) {
                let since = *self.unknown_workload_since.entry(dst).or_insert(now);
                if now.duration_since(since) < self.grace {
                    let due = since + self.grace;
                    report.retry_at = Some(report.retry_at.map_or(due, |r| r.min(due)));
                    continue;
                }
            }
            match kernel.delete_route(&route).await {
                Ok(()) | Err(KernelError::NotFound(_)) => {
                    debug!(route = %route, "removed route");
                    self.tracker.commit_deletion(&dst);
                    self.unknown_workload_since.remove(&dst);
                    report.removed += 1;
                }
                Err(e) => report.failures.push(format!("deleting {route}: {e}")),
            }
        }
        self.unknown_workload_since
            .retain(|dst, _| self.tracker.dataplane().contains_key(dst));

        let mut writes = Vec::new();
        for (dst, want, have) in self.tracker.pending_updates() {
            if have.is_none() && self.foreign.contains_key(&dst) {
                if let Some(other) = self.foreign.get(&dst) {
                    warn!(want = %want, existing = %other, "route destination held by a route calico-rs does not own; leaving it");
                }
                report.conflicts.push(dst);
                continue;
            }
            let first_remove = have.filter(|have| must_remove_first(&want, have));
            writes.push((dst, want, first_remove));
        }
        // Several requests in flight on the one netlink socket: a burst of new routes (a
        // restart, a large cluster's blocks) costs a round trip per batch, not per route.
        let results: Vec<_> = futures::stream::iter(writes)
            .map(|(dst, want, first_remove)| async move {
                if let Some(old) = first_remove {
                    match kernel.delete_route(&old).await {
                        Ok(()) | Err(KernelError::NotFound(_)) => {}
                        Err(e) => return (dst, want, Err(e)),
                    }
                }
                let result = kernel.replace_route(&want).await;
                (dst, want, result)
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        for (dst, want, result) in results {
            match result {
                Ok(()) => {
                    debug!(route = %want, "programmed route");
                    self.tracker.commit_update(dst, want);
                    report.added += 1;
                }
                Err(KernelError::NotFound(what)) => {
                    // Usually a device that does not exist yet (a veth the CNI plugin is
                    // still creating); the link event that follows triggers a new pass.
                    debug!(route = %want, %what, "route not programmable yet");
                    report.failures.push(format!("adding {want}: {what}"));
                }
                Err(KernelError::Unreachable(why)) => {
                    // Not a failure to retry every second: nothing changes until the
                    // underlay does, and that comes with a kernel route event.
                    if self.unreachable.insert(dst) {
                        warn!(route = %want, %why, "next hop not reachable without encapsulation; route left out until the underlay changes");
                    }
                    report.unreachable.push(dst);
                }
                Err(e) => report.failures.push(format!("adding {want}: {e}")),
            }
        }
        self.unreachable
            .retain(|dst| report.unreachable.contains(dst));
        if !report.failures.is_empty() {
            let due = now + Duration::from_secs(1);
            report.retry_at = Some(report.retry_at.map_or(due, |r| r.min(due)));
        }
        Ok(report)
    }

    async fn resync<K: Kernel + ?Sized>(&mut self, kernel: &K) -> Result<(), KernelError> {
        let (owned, foreign): (Vec<Route>, Vec<Route>) = kernel
            .dump_routes()
            .await?
            .into_iter()
            .partition(|route| self.policy.owns(route));
        self.foreign = foreign.into_iter().map(|r| (r.dst, r)).collect();
        self.tracker
            .set_dataplane(owned.into_iter().map(|r| (r.dst, r)));
        Ok(())
    }
}

/// True when `have` has to leave the kernel before `want` can replace it: IPv6 refuses an
/// onlink gateway that a (non-default) route through another device covers
/// (`ip6_route_check_nh_onlink`: "Nexthop has invalid gateway or device mismatch"), and
/// a remote block switched to VXLAN has its VTEP inside the block, whose learned route
/// still points at the underlay.
fn must_remove_first(want: &Route, have: &Route) -> bool {
    let RouteTarget::Gateway {
        via: via @ IpAddr::V6(_),
        dev: Some(dev),
        onlink: true,
    } = &want.target
    else {
        return false;
    };
    have.dst.contains(via)
        && !matches!(have.target, RouteTarget::Blackhole)
        && have.dev() != Some(dev.as_str())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::super::fake::FakeKernel;
    use super::super::types::{PROTO_BIRD, PROTO_BOOT, RouteTarget};
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    fn via(dst: &str, gw: &str, dev: &str) -> Route {
        Route {
            dst: net(dst),
            target: RouteTarget::Gateway {
                via: gw.parse::<IpAddr>().expect("ip"),
                dev: Some(dev.into()),
                onlink: false,
            },
            protocol: PROTO_BIRD,
        }
    }

    fn desired(routes: &[Route]) -> BTreeMap<IpNet, Route> {
        routes.iter().map(|r| (r.dst, r.clone())).collect()
    }

    #[tokio::test]
    async fn missing_routes_are_added_and_unwanted_owned_routes_removed() {
        let kernel = FakeKernel::with_links(&["eth0"]);
        kernel.insert_route(via("10.0.9.0/26", "10.0.0.9", "eth0"));
        let mut table = RouteTable::new(OwnershipPolicy::default());
        table.set_desired(desired(&[via("10.0.1.0/26", "10.0.0.2", "eth0")]));
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!((report.added, report.removed), (1, 1));
        assert_eq!(
            kernel.route_strings(),
            vec!["10.0.1.0/26 via 10.0.0.2 dev eth0 proto bird"]
        );
    }

    #[tokio::test]
    async fn foreign_routes_are_never_touched_even_when_they_conflict() {
        let kernel = FakeKernel::with_links(&["eth0"]);
        let mut theirs = via("10.0.1.0/26", "10.0.0.7", "eth0");
        theirs.protocol = PROTO_BOOT;
        kernel.insert_route(theirs);
        let mut table = RouteTable::new(OwnershipPolicy::default());
        table.set_desired(desired(&[via("10.0.1.0/26", "10.0.0.2", "eth0")]));
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!(report.conflicts, vec![net("10.0.1.0/26")]);
        assert_eq!(
            kernel.route_strings(),
            vec!["10.0.1.0/26 via 10.0.0.7 dev eth0"]
        );
    }

    #[tokio::test]
    async fn a_route_deleted_behind_our_back_is_put_back() {
        let kernel = FakeKernel::with_links(&["eth0"]);
        let mut table = RouteTable::new(OwnershipPolicy::default());
        let r = via("10.0.1.0/26", "10.0.0.2", "eth0");
        table.set_desired(desired(std::slice::from_ref(&r)));
        table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        kernel.remove_route(&r.dst);
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!(report.added, 1);
        assert_eq!(kernel.route_strings().len(), 1);
    }

    #[tokio::test]
    async fn unknown_workload_routes_survive_the_grace_period_then_go() {
        let kernel = FakeKernel::with_links(&["cali0123456789a"]);
        kernel.insert_route(Route {
            dst: net("10.0.1.5/32"),
            target: RouteTarget::Device {
                dev: "cali0123456789a".into(),
            },
            protocol: PROTO_BOOT,
        });
        let mut table = RouteTable::new(OwnershipPolicy::default());
        let t0 = Instant::now();
        let report = table.reconcile(&kernel, t0).await.expect("pass");
        assert_eq!(report.removed, 0);
        assert_eq!(report.retry_at, Some(t0 + WORKLOAD_ROUTE_GRACE));
        let later = t0 + WORKLOAD_ROUTE_GRACE;
        let report = table.reconcile(&kernel, later).await.expect("pass");
        assert_eq!(report.removed, 1);
        assert!(kernel.route_strings().is_empty());
    }

    #[tokio::test]
    async fn the_echoes_of_its_own_writes_ask_for_no_dump_and_other_changes_do() {
        let kernel = FakeKernel::with_links(&["eth0"]);
        let mut theirs = via("10.0.7.0/24", "10.0.0.7", "eth0");
        theirs.protocol = PROTO_BOOT;
        kernel.insert_route(theirs.clone());
        kernel.insert_route(via("10.0.9.0/26", "10.0.0.9", "eth0"));
        let mut table = RouteTable::new(OwnershipPolicy::default());
        let mine = via("10.0.1.0/26", "10.0.0.2", "eth0");
        // Before the first dump nothing is known.
        assert!(!table.already_knows(&RouteNotice::Added(mine.clone())));
        table.set_desired(desired(std::slice::from_ref(&mine)));
        table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        // The echoes of the write and of the deletion of 10.0.9.0/26.
        assert!(table.already_knows(&RouteNotice::Added(mine.clone())));
        assert!(table.already_knows(&RouteNotice::Removed(via(
            "10.0.9.0/26",
            "10.0.0.9",
            "eth0"
        ))));
        assert!(table.already_knows(&RouteNotice::Added(theirs.clone())));
        assert!(table.already_knows(&RouteNotice::Elsewhere));
        // Someone replacing, deleting or adding routes, or a notice nobody could read.
        for notice in [
            RouteNotice::Added(via("10.0.1.0/26", "10.0.0.3", "eth0")),
            RouteNotice::Removed(mine.clone()),
            RouteNotice::Removed(theirs.clone()),
            RouteNotice::Added(via("10.0.2.0/26", "10.0.0.2", "eth0")),
            RouteNotice::Added(Route {
                protocol: PROTO_BOOT,
                ..via("10.0.8.0/24", "10.0.0.8", "eth0")
            }),
            RouteNotice::Unreadable,
        ] {
            assert!(!table.already_knows(&notice), "{notice:?}");
        }
    }

    #[tokio::test]
    async fn held_deletions_keep_routes_learned_before_a_restart() {
        let kernel = FakeKernel::with_links(&["eth0"]);
        kernel.insert_route(via("10.0.9.0/26", "10.0.0.9", "eth0"));
        let mut table = RouteTable::new(OwnershipPolicy::default());
        table.set_hold_deletions(true);
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!(report.removed, 0);
        table.set_hold_deletions(false);
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!(report.removed, 1);
    }

    #[tokio::test]
    async fn an_unreachable_next_hop_is_left_out_without_a_retry_loop() {
        let kernel = FakeKernel::with_links(&["eth0"]);
        kernel.unreachable_gateway("10.0.1.3".parse().expect("ip"));
        let mut table = RouteTable::new(OwnershipPolicy::default());
        let mut r = via("10.244.3.0/26", "10.0.1.3", "eth0");
        r.target = RouteTarget::Gateway {
            via: "10.0.1.3".parse().expect("ip"),
            dev: None,
            onlink: false,
        };
        table.set_desired(desired(&[r]));
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!(report.unreachable, vec![net("10.244.3.0/26")]);
        assert!(report.failures.is_empty());
        assert_eq!(report.retry_at, None);
    }

    #[tokio::test]
    async fn a_route_on_a_missing_device_is_retried_not_fatal() {
        let kernel = FakeKernel::with_links(&[]);
        let mut table = RouteTable::new(OwnershipPolicy::default());
        table.set_desired(desired(&[via("10.0.1.0/26", "10.0.0.2", "tunl0")]));
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!(report.failures.len(), 1);
        assert!(report.retry_at.is_some());
        kernel.add_link("tunl0");
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!(report.added, 1);
    }

    #[test]
    fn an_ipv6_vtep_inside_the_replaced_route_makes_it_go_first() {
        let learned = Route {
            dst: net("fd00:244::40/122"),
            target: RouteTarget::Gateway {
                via: "fd00::2".parse().expect("ip"),
                dev: Some("eth0".into()),
                onlink: false,
            },
            protocol: 12,
        };
        let vxlan = Route {
            dst: net("fd00:244::40/122"),
            target: RouteTarget::Gateway {
                via: "fd00:244::41".parse().expect("ip"),
                dev: Some("vxlan-v6.calico".into()),
                onlink: true,
            },
            protocol: 80,
        };
        assert!(must_remove_first(&vxlan, &learned));
        // Back to plain routing, or IPv4 (which has no such check): replaced in place.
        assert!(!must_remove_first(&learned, &vxlan));
        let v4 = via("10.244.2.0/26", "10.244.2.0", "vxlan.calico");
        let mut v4_onlink = v4.clone();
        v4_onlink.target = RouteTarget::Gateway {
            via: "10.244.2.0".parse().expect("ip"),
            dev: Some("vxlan.calico".into()),
            onlink: true,
        };
        assert!(!must_remove_first(
            &v4_onlink,
            &via("10.244.2.0/26", "10.0.0.2", "eth0")
        ));
    }
}
