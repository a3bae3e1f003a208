//! [`Dataplane`]: applies a whole [`DesiredState`] (devices, neighbours, FDB entries,
//! routes, workload sysctls) to the kernel in dependency order, and reports what it did.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;
use tracing::{info, warn};

use super::kernel::{Kernel, KernelError, KernelEvent, LinkInfo};
use super::nat::NatTable;
use super::netfilter::NetfilterError;
use super::ownership::{
    FLANNEL_DEVICE, IPIP_DEVICE, OwnershipPolicy, VXLAN_DEVICE, VXLAN_DEVICE_V6, WORKLOAD_PREFIX,
};
use super::route_table::RouteTable;
use super::types::{DesiredState, FdbEntry, Neighbour, Route};

/// What one pass did, for logs, metrics and the status endpoint.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub routes_added: usize,
    pub routes_removed: usize,
    pub other_changes: usize,
    pub failures: Vec<String>,
    pub retry_at: Option<Instant>,
}

/// Health of the pieces the dataplane manages, shown in node status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataplaneHealth {
    /// Set when IPIP is wanted but the kernel cannot do it.
    pub ipip_unsupported: Option<String>,
    /// Set when a pool wants natOutgoing but the netfilter tools are missing.
    pub nat_unavailable: Option<String>,
}

/// The halves of a make-before-break update of neighbours and FDB entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Add what is missing (before the routes).
    Add,
    /// Remove what is no longer wanted (after the routes).
    Remove,
}

/// What a pass reads from the kernel before acting. A pass triggered only by a change of
/// the desired state, with no kernel event since the last pass, trusts what it read then
/// (plus its own writes since): a new route costs its write, not a dump of every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    /// Dump devices and addresses (after link events: a device came or went).
    pub links: bool,
    /// Dump the route table (after route events: someone else changed it).
    pub routes: bool,
}

impl Refresh {
    /// Read everything (the first pass, link events, retries, the resync timer).
    pub const ALL: Refresh = Refresh {
        links: true,
        routes: true,
    };
    /// Read nothing that has not changed since the last pass.
    pub const NONE: Refresh = Refresh {
        links: false,
        routes: false,
    };

    /// Both refreshes together.
    pub fn union(self, other: Refresh) -> Refresh {
        Refresh {
            links: self.links || other.links,
            routes: self.routes || other.routes,
        }
    }
}

/// Owns the kernel state calico-node programs.
pub struct Dataplane<K: Kernel> {
    kernel: K,
    routes: RouteTable,
    /// Devices as last dumped; `None` when they must be read again.
    links: Option<Vec<LinkInfo>>,
    /// The desired state but its routes (which the route table holds).
    desired: DesiredState,
    /// Workload devices (name, ifindex) whose sysctls are set.
    configured_workloads: BTreeSet<(String, u32)>,
    health: DataplaneHealth,
    /// natOutgoing, one table per family attached with [`with_nat`](Self::with_nat).
    nat: Vec<NatTable>,
}

impl<K: Kernel> Dataplane<K> {
    /// A dataplane programming `kernel`.
    pub fn new(kernel: K, routes: RouteTable) -> Dataplane<K> {
        Dataplane {
            kernel,
            routes,
            links: None,
            desired: DesiredState::default(),
            configured_workloads: BTreeSet::new(),
            health: DataplaneHealth::default(),
            nat: Vec::new(),
        }
    }

    /// Also programs natOutgoing of `nat`'s family through it.
    pub fn with_nat(mut self, nat: NatTable) -> Dataplane<K> {
        self.nat.push(nat);
        self
    }

    /// The kernel this dataplane programs.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Replaces the desired state, which the next [`apply`](Self::apply) acts on; false
    /// when it is the one already held. The routes move to the route table (at scale they
    /// are most of the state: neither copied nor kept twice).
    pub fn set_desired(&mut self, mut desired: DesiredState) -> bool {
        let routes = std::mem::take(&mut desired.routes);
        if *self.routes.desired() == routes && self.desired == desired {
            return false;
        }
        self.routes.set_policy(OwnershipPolicy {
            managed_cidrs: desired.managed_cidrs.clone(),
        });
        self.routes.set_desired(routes);
        for nat in &mut self.nat {
            nat.set_desired(desired.nat_of(nat.family()).cloned());
        }
        self.desired = desired;
        true
    }

    /// Changes some desired routes, the rest of the desired state staying as it is; true
    /// when any changed.
    pub fn update_routes(&mut self, changes: Vec<(IpNet, Option<Route>)>) -> bool {
        self.routes.update_desired(changes)
    }

    /// The desired routes.
    pub fn desired_routes(&self) -> &BTreeMap<IpNet, Route> {
        self.routes.desired()
    }

    /// Holds (or releases) deletions of unwanted owned routes; see
    /// [`RouteTable::set_hold_deletions`].
    pub fn set_hold_deletions(&mut self, hold: bool) {
        self.routes.set_hold_deletions(hold);
    }

    /// Health for node status.
    pub fn health(&self) -> &DataplaneHealth {
        &self.health
    }

    /// What the next pass must read again after a kernel event: nothing for the echo of
    /// our own route writes, the route table for other route changes, everything after a
    /// link event.
    pub fn refresh_for(&self, event: &KernelEvent) -> Refresh {
        match event {
            KernelEvent::Link => Refresh::ALL,
            KernelEvent::Route { msg, removed } => {
                let notice = self.kernel.read_route_notice(msg, *removed);
                if self.routes.already_knows(&notice) {
                    Refresh::NONE
                } else {
                    Refresh {
                        links: false,
                        routes: true,
                    }
                }
            }
        }
    }

    /// One reconcile pass over everything, reading the kernel first.
    pub async fn apply(&mut self, now: Instant) -> Result<ApplyReport, KernelError> {
        self.apply_with(now, Refresh::ALL).await
    }

    /// One reconcile pass that reads from the kernel only what `refresh` asks for (and
    /// whatever it has never read).
    pub async fn apply_with(
        &mut self,
        now: Instant,
        refresh: Refresh,
    ) -> Result<ApplyReport, KernelError> {
        let mut report = ApplyReport::default();
        let links = match self.links.take() {
            Some(links) if !refresh.links => links,
            _ => self.kernel.links().await?,
        };
        self.apply_devices(&links, &mut report).await;
        self.apply_workload_sysctls(&links, &mut report).await;
        // Make before break: new neighbours and FDB entries go in before the routes that
        // need them; stale ones and unwanted devices go only once no route uses them (a
        // pool switching mode keeps its traffic flowing).
        self.apply_neighbours(&mut report, Step::Add).await;
        self.apply_fdb(&mut report, Step::Add).await;
        let routes = self
            .routes
            .reconcile_with(&self.kernel, now, refresh.routes || refresh.links)
            .await?;
        self.apply_neighbours(&mut report, Step::Remove).await;
        self.apply_fdb(&mut report, Step::Remove).await;
        self.remove_unwanted_devices(&links, &mut report).await;
        // After a change to devices, neighbours or FDB entries the next pass reads the
        // devices again (the echoed link events would ask for it anyway); otherwise this
        // dump stays good until a link event.
        if report.other_changes == 0 {
            self.links = Some(links);
        }
        report.routes_added = routes.added;
        report.routes_removed = routes.removed;
        report.failures.extend(routes.failures);
        report.retry_at = routes.retry_at;
        self.apply_nat(now, &mut report).await;
        if !report.failures.is_empty() && report.retry_at.is_none() {
            report.retry_at = Some(now + std::time::Duration::from_secs(1));
        }
        Ok(report)
    }

    async fn apply_devices(&mut self, links: &[LinkInfo], report: &mut ApplyReport) {
        let find = |name: &str| links.iter().find(|l| l.name == name);
        for dev in &self.desired.vxlan_devices {
            let current = find(&dev.name);
            let in_sync = current.is_some_and(|l| {
                l.up && l.mtu == dev.mtu
                    && l.mac == Some(dev.mac)
                    && l.has_only_address(dev.local.is_ipv6(), dev.address)
            });
            if in_sync {
                continue;
            }
            match self.kernel.ensure_vxlan(dev).await {
                Ok(()) => {
                    info!(device = %dev.name, vni = dev.vni, mtu = dev.mtu, "configured VXLAN device");
                    report.other_changes += 1;
                }
                Err(e) => report
                    .failures
                    .push(format!("configuring {}: {e}", dev.name)),
            }
        }
        match (&self.desired.ipip, find(IPIP_DEVICE)) {
            (Some(want), current) => {
                let in_sync = current.is_some_and(|l| {
                    l.up && l.mtu == want.mtu
                        && l.has_only_address(false, want.address.map(IpAddr::V4))
                });
                if !in_sync {
                    match self.kernel.ensure_ipip(want).await {
                        Ok(()) => {
                            info!(mtu = want.mtu, "configured tunl0");
                            self.health.ipip_unsupported = None;
                            report.other_changes += 1;
                        }
                        Err(KernelError::Unsupported(_)) => {
                            if self.health.ipip_unsupported.is_none() {
                                warn!(
                                    "kernel has no ipip support: IPIP pools cannot be used on this node (tunl0 missing); routes through tunl0 stay unprogrammed"
                                );
                            }
                            self.health.ipip_unsupported =
                                Some("kernel has no ipip support".into());
                        }
                        Err(e) => report.failures.push(format!("configuring tunl0: {e}")),
                    }
                }
            }
            (None, Some(current)) if !current.addresses.is_empty() => {
                match self.kernel.flush_addresses(IPIP_DEVICE).await {
                    Ok(()) | Err(KernelError::NotFound(_)) => report.other_changes += 1,
                    Err(e) => report.failures.push(format!("clearing tunl0: {e}")),
                }
                self.health.ipip_unsupported = None;
            }
            (None, _) => self.health.ipip_unsupported = None,
        }
    }

    /// Deletes the VXLAN devices nothing wants any more (after their routes are gone).
    async fn remove_unwanted_devices(&mut self, links: &[LinkInfo], report: &mut ApplyReport) {
        for name in [VXLAN_DEVICE, VXLAN_DEVICE_V6, FLANNEL_DEVICE] {
            let wanted = self.desired.vxlan_devices.iter().any(|d| d.name == name);
            if !wanted && links.iter().any(|l| l.name == name) {
                match self.kernel.delete_link(name).await {
                    Ok(()) | Err(KernelError::NotFound(_)) => {
                        info!(device = name, "removed device no pool uses any more");
                        report.other_changes += 1;
                    }
                    Err(e) => report.failures.push(format!("removing {name}: {e}")),
                }
            }
        }
    }

    /// natOutgoing, when a [`NatTable`] is attached (it reads the kernel only when the
    /// wanted state changed or its resync is due).
    async fn apply_nat(&mut self, now: Instant, report: &mut ApplyReport) {
        let mut unavailable = None;
        for nat in &mut self.nat {
            match nat.reconcile(now).await {
                Ok(r) => report.other_changes += usize::from(r.changed),
                Err(e @ NetfilterError::Missing(_)) => {
                    unavailable = Some(format!("natOutgoing not programmed: {e}"));
                }
                Err(e) => report
                    .failures
                    .push(format!("{} natOutgoing: {e}", nat.family())),
            }
        }
        if unavailable.is_some() && self.health.nat_unavailable.is_none() {
            warn!(error = ?unavailable, "natOutgoing pools cannot be programmed on this node");
        }
        self.health.nat_unavailable = unavailable;
    }

    /// Felix's per-interface sysctls for every `cali*` device (the CNI plugin sets them too;
    /// doing it here repairs devices made by an older plugin or changed by hand).
    async fn apply_workload_sysctls(&mut self, links: &[LinkInfo], report: &mut ApplyReport) {
        let present: BTreeSet<(String, u32)> = links
            .iter()
            .filter(|l| l.name.starts_with(WORKLOAD_PREFIX))
            .map(|l| (l.name.clone(), l.index))
            .collect();
        self.configured_workloads.retain(|k| present.contains(k));
        for (name, index) in present {
            if self.configured_workloads.contains(&(name.clone(), index)) {
                continue;
            }
            let mut ok = true;
            for (path, value) in workload_sysctls(&name) {
                match self.kernel.set_sysctl(&path, value).await {
                    Ok(()) => {}
                    // proxy_delay and IPv6 knobs may be absent; Calico only warns.
                    Err(KernelError::NotFound(_)) => {}
                    Err(e) => {
                        ok = false;
                        report.failures.push(format!("sysctl {path}: {e}"));
                    }
                }
            }
            if ok {
                self.configured_workloads.insert((name, index));
            }
        }
    }

    async fn apply_neighbours(&mut self, report: &mut ApplyReport, step: Step) {
        for dev in self.desired.vxlan_devices.clone() {
            let want: BTreeSet<&Neighbour> = self
                .desired
                .neighbours
                .iter()
                .filter(|n| n.dev == dev.name)
                .collect();
            let have = match self.kernel.dump_neighbours(&dev.name).await {
                Ok(h) => h,
                Err(e) => {
                    report.failures.push(format!("listing neighbours: {e}"));
                    continue;
                }
            };
            if step == Step::Remove {
                for n in have.iter().filter(|n| !want.contains(n)) {
                    if self.kernel.delete_neighbour(n).await.is_ok() {
                        report.other_changes += 1;
                    }
                }
                continue;
            }
            for n in want.into_iter().filter(|n| !have.contains(n)) {
                match self.kernel.replace_neighbour(n).await {
                    Ok(()) => report.other_changes += 1,
                    Err(e) => report.failures.push(format!("neighbour {}: {e}", n.ip)),
                }
            }
        }
    }

    async fn apply_fdb(&mut self, report: &mut ApplyReport, step: Step) {
        for dev in self.desired.vxlan_devices.clone() {
            let want: BTreeSet<&FdbEntry> = self
                .desired
                .fdb
                .iter()
                .filter(|e| e.dev == dev.name)
                .collect();
            let have = match self.kernel.dump_fdb(&dev.name).await {
                Ok(h) => h,
                Err(e) => {
                    report.failures.push(format!("listing fdb: {e}"));
                    continue;
                }
            };
            if step == Step::Remove {
                for e in have.iter().filter(|e| !want.contains(e)) {
                    if self.kernel.delete_fdb(e).await.is_ok() {
                        report.other_changes += 1;
                    }
                }
                continue;
            }
            for e in want.into_iter().filter(|e| !have.contains(e)) {
                match self.kernel.replace_fdb(e).await {
                    Ok(()) => report.other_changes += 1,
                    Err(err) => report.failures.push(format!("fdb entry: {err}")),
                }
            }
        }
    }
}

/// The sysctls Calico sets on a workload interface (reference calico.md §4.3).
pub fn workload_sysctls(dev: &str) -> Vec<(String, &'static str)> {
    vec![
        (format!("net/ipv4/conf/{dev}/route_localnet"), "1"),
        (format!("net/ipv4/neigh/{dev}/proxy_delay"), "0"),
        (format!("net/ipv4/conf/{dev}/proxy_arp"), "1"),
        (format!("net/ipv4/conf/{dev}/forwarding"), "1"),
        (format!("net/ipv6/conf/{dev}/accept_ra"), "0"),
    ]
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::fake::FakeKernel;
    use super::super::types::{IpipDevice, PROTO_CALICO, RouteTarget, VxlanDevice};
    use super::*;

    fn vxlan(address: &str) -> VxlanDevice {
        VxlanDevice {
            name: VXLAN_DEVICE.into(),
            vni: 4096,
            port: 4789,
            parent: "eth0".into(),
            local: "10.0.0.1".parse().expect("ip"),
            mac: [0x66, 1, 2, 3, 4, 5],
            mtu: 1450,
            address: Some(address.parse().expect("ip")),
        }
    }

    #[tokio::test]
    async fn vxlan_mode_creates_device_neighbour_fdb_and_onlink_route_then_removes_them() {
        let kernel = FakeKernel::with_links(&["eth0"]);
        let mut dp = Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()));
        let remote_vtep: Ipv4Addr = "10.244.2.0".parse().expect("ip");
        let mac = [0x66, 9, 9, 9, 9, 9];
        let route = Route {
            dst: "10.244.2.0/26".parse().expect("cidr"),
            target: RouteTarget::Gateway {
                via: remote_vtep.into(),
                dev: Some(VXLAN_DEVICE.into()),
                onlink: true,
            },
            protocol: PROTO_CALICO,
        };
        dp.set_desired(DesiredState {
            routes: BTreeMap::from([(route.dst, route)]),
            vxlan_devices: vec![vxlan("10.244.1.0")],
            neighbours: BTreeSet::from([Neighbour {
                dev: VXLAN_DEVICE.into(),
                ip: remote_vtep.into(),
                mac,
            }]),
            fdb: BTreeSet::from([FdbEntry {
                dev: VXLAN_DEVICE.into(),
                mac,
                dst: "10.0.0.2".parse().expect("ip"),
            }]),
            ..DesiredState::default()
        });
        let report = dp.apply(Instant::now()).await.expect("pass");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let k = dp.kernel();
        assert_eq!(k.link(VXLAN_DEVICE).map(|l| l.mtu), Some(1450));
        assert_eq!(k.neighbours().len(), 1);
        assert_eq!(k.fdb().len(), 1);
        assert_eq!(
            k.route_strings(),
            vec!["10.244.2.0/26 via 10.244.2.0 dev vxlan.calico onlink proto 80"]
        );

        dp.set_desired(DesiredState::default());
        dp.apply(Instant::now()).await.expect("pass");
        let k = dp.kernel();
        assert!(k.link(VXLAN_DEVICE).is_none());
        assert!(k.neighbours().is_empty() && k.fdb().is_empty());
        assert!(k.route_strings().is_empty());
    }

    #[tokio::test]
    async fn ipip_on_a_kernel_without_ipip_is_reported_and_the_rest_still_works() {
        let kernel = FakeKernel::with_links(&["eth0"]).without_ipip();
        let mut dp = Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()));
        let blackhole = Route {
            dst: "10.244.1.0/26".parse().expect("cidr"),
            target: RouteTarget::Blackhole,
            protocol: super::super::types::PROTO_BIRD,
        };
        dp.set_desired(DesiredState {
            routes: BTreeMap::from([(blackhole.dst, blackhole)]),
            ipip: Some(IpipDevice {
                mtu: 1480,
                address: None,
            }),
            ..DesiredState::default()
        });
        dp.apply(Instant::now()).await.expect("pass");
        assert_eq!(
            dp.health().ipip_unsupported.as_deref(),
            Some("kernel has no ipip support")
        );
        assert_eq!(
            dp.kernel().route_strings(),
            vec!["blackhole 10.244.1.0/26 proto bird"]
        );
    }

    #[tokio::test]
    async fn a_pass_without_refresh_writes_new_routes_and_trusts_the_last_dump() {
        let kernel = FakeKernel::with_links(&["eth0"]);
        let mut dp = Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()));
        let route = |dst: &str| Route {
            dst: dst.parse().expect("cidr"),
            target: RouteTarget::Gateway {
                via: "10.0.0.2".parse().expect("ip"),
                dev: Some("eth0".into()),
                onlink: false,
            },
            protocol: super::super::types::PROTO_BIRD,
        };
        let (a, b) = (route("10.244.2.0/26"), route("10.244.3.0/26"));
        // The first pass reads the kernel even when asked not to: it has never read it.
        dp.set_desired(DesiredState {
            routes: BTreeMap::from([(a.dst, a.clone())]),
            ..DesiredState::default()
        });
        dp.apply_with(Instant::now(), Refresh::NONE)
            .await
            .expect("pass");
        dp.kernel().remove_route(&a.dst);
        // A new desired route is written without a dump; the deletion is not seen...
        dp.set_desired(DesiredState {
            routes: BTreeMap::from([(a.dst, a.clone()), (b.dst, b.clone())]),
            ..DesiredState::default()
        });
        let report = dp
            .apply_with(Instant::now(), Refresh::NONE)
            .await
            .expect("pass");
        assert_eq!(report.routes_added, 1);
        assert_eq!(dp.kernel().route_strings(), vec![b.to_string()]);
        // ...until the route event it caused asks for the table again.
        let refresh = Refresh {
            links: false,
            routes: true,
        };
        let report = dp.apply_with(Instant::now(), refresh).await.expect("pass");
        assert_eq!(report.routes_added, 1);
        assert_eq!(dp.kernel().route_strings().len(), 2);
    }

    #[tokio::test]
    async fn workload_devices_get_calico_sysctls_once() {
        let kernel = FakeKernel::with_links(&["eth0", "cali0123456789a"]);
        let mut dp = Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()));
        dp.apply(Instant::now()).await.expect("pass");
        let k = dp.kernel();
        assert_eq!(
            k.sysctl("net/ipv4/conf/cali0123456789a/proxy_arp")
                .as_deref(),
            Some("1")
        );
        assert_eq!(k.sysctl("net/ipv4/conf/eth0/proxy_arp"), None);
    }
}
