//! An in-memory [`Kernel`] for unit tests of the reconcilers (Felix's `netlinkshim` idea):
//! it enforces what matters for the logic (routes need their device to exist) and nothing
//! more.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use ipnet::IpNet;

use super::kernel::{Kernel, KernelError, LinkInfo, VxlanLink};
use super::types::{FdbEntry, IpipDevice, Neighbour, Route, VxlanDevice};

/// The fake kernel's state.
#[derive(Default)]
struct State {
    links: BTreeMap<String, LinkInfo>,
    routes: BTreeMap<IpNet, Route>,
    neighbours: BTreeSet<Neighbour>,
    fdb: BTreeSet<FdbEntry>,
    sysctls: BTreeMap<String, String>,
    ipip_supported: bool,
    unreachable: BTreeSet<std::net::IpAddr>,
    /// How many neighbour dumps were asked for.
    neighbour_dumps: usize,
}

/// An in-memory kernel.
#[derive(Default)]
pub struct FakeKernel {
    state: Mutex<State>,
}

impl FakeKernel {
    /// A kernel with the given devices (up, MTU 1500) and IPIP support.
    pub fn with_links(names: &[&str]) -> FakeKernel {
        let k = FakeKernel::default();
        k.lock().ipip_supported = true;
        for name in names {
            k.add_link(name);
        }
        k
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another test thread panicked: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `ip link add type ipip` fail as on kernels without the module.
    pub fn without_ipip(self) -> FakeKernel {
        self.lock().ipip_supported = false;
        self
    }

    /// Adds a device.
    pub fn add_link(&self, name: &str) {
        let mut s = self.lock();
        let index = s.links.len() as u32 + 2;
        s.links.insert(
            name.to_string(),
            LinkInfo {
                index,
                name: name.to_string(),
                kind: None,
                mtu: 1500,
                mac: None,
                up: true,
                addresses: Vec::new(),
                addresses_v6: Vec::new(),
                vxlan: None,
            },
        );
    }

    /// Makes routes through `gateway` fail as ENETUNREACH does (a next hop off-link).
    pub fn unreachable_gateway(&self, gateway: std::net::IpAddr) {
        self.lock().unreachable.insert(gateway);
    }

    /// Puts a route in the table as someone else would.
    pub fn insert_route(&self, route: Route) {
        self.lock().routes.insert(route.dst, route);
    }

    /// Removes a route as `ip route del` by hand would.
    pub fn remove_route(&self, dst: &IpNet) {
        self.lock().routes.remove(dst);
    }

    /// The table as `ip route` lines, sorted by destination.
    pub fn route_strings(&self) -> Vec<String> {
        self.lock().routes.values().map(Route::to_string).collect()
    }

    /// A device's current state.
    pub fn device(&self, name: &str) -> Option<LinkInfo> {
        self.lock().links.get(name).cloned()
    }

    /// Current neighbours.
    pub fn neighbours(&self) -> Vec<Neighbour> {
        self.lock().neighbours.iter().cloned().collect()
    }

    /// Removes every neighbour as `ip neigh flush` by hand would.
    pub fn flush_neighbours(&self) {
        self.lock().neighbours.clear();
    }

    /// How many times the neighbours of a device were listed.
    pub fn neighbour_dumps(&self) -> usize {
        self.lock().neighbour_dumps
    }

    /// Current FDB entries.
    pub fn fdb(&self) -> Vec<FdbEntry> {
        self.lock().fdb.iter().cloned().collect()
    }

    /// A sysctl's value as last written.
    pub fn sysctl(&self, path: &str) -> Option<String> {
        self.lock().sysctls.get(path).cloned()
    }

    fn require_link(s: &State, dev: &str) -> Result<(), KernelError> {
        if s.links.contains_key(dev) {
            Ok(())
        } else {
            Err(KernelError::NotFound(format!("device {dev}")))
        }
    }
}

#[async_trait]
impl Kernel for FakeKernel {
    async fn dump_routes(&self) -> Result<Vec<Route>, KernelError> {
        Ok(self.lock().routes.values().cloned().collect())
    }

    async fn replace_route(&self, route: &Route) -> Result<(), KernelError> {
        let mut s = self.lock();
        if let Some(dev) = route.dev() {
            Self::require_link(&s, dev)?;
        }
        if let super::types::RouteTarget::Gateway { via, .. } = &route.target
            && s.unreachable.contains(via)
        {
            return Err(KernelError::Unreachable(format!("{via}")));
        }
        s.routes.insert(route.dst, route.clone());
        Ok(())
    }

    async fn delete_route(&self, route: &Route) -> Result<(), KernelError> {
        match self.lock().routes.remove(&route.dst) {
            Some(_) => Ok(()),
            None => Err(KernelError::NotFound(route.to_string())),
        }
    }

    async fn links(&self) -> Result<Vec<LinkInfo>, KernelError> {
        Ok(self.lock().links.values().cloned().collect())
    }

    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, KernelError> {
        Ok(self.device(name))
    }

    async fn ensure_vxlan(&self, dev: &VxlanDevice) -> Result<(), KernelError> {
        let mut s = self.lock();
        Self::require_link(&s, &dev.parent)?;
        let index = s
            .links
            .get(&dev.name)
            .map_or(s.links.len() as u32 + 2, |l| l.index);
        s.links.insert(
            dev.name.clone(),
            LinkInfo {
                index,
                name: dev.name.clone(),
                kind: Some("vxlan".into()),
                mtu: dev.mtu,
                mac: Some(dev.mac),
                up: true,
                addresses: dev
                    .address
                    .and_then(|a| match a {
                        IpAddr::V4(a) => Some((a, 32)),
                        IpAddr::V6(_) => None,
                    })
                    .into_iter()
                    .collect(),
                addresses_v6: dev
                    .address
                    .and_then(|a| match a {
                        IpAddr::V6(a) => Some((a, 128)),
                        IpAddr::V4(_) => None,
                    })
                    .into_iter()
                    .collect(),
                vxlan: Some(VxlanLink {
                    vni: dev.vni,
                    port: dev.port,
                    local: Some(dev.local),
                    parent: Some(dev.parent.clone()),
                }),
            },
        );
        Ok(())
    }

    async fn ensure_ipip(&self, dev: &IpipDevice) -> Result<(), KernelError> {
        let mut s = self.lock();
        if !s.ipip_supported {
            return Err(KernelError::Unsupported(
                "kernel has no ipip support".into(),
            ));
        }
        let index = s
            .links
            .get("tunl0")
            .map_or(s.links.len() as u32 + 2, |l| l.index);
        s.links.insert(
            "tunl0".into(),
            LinkInfo {
                index,
                name: "tunl0".into(),
                kind: Some("ipip".into()),
                mtu: dev.mtu,
                mac: None,
                up: true,
                addresses: dev.address.map(|a| (a, 32)).into_iter().collect(),
                addresses_v6: Vec::new(),
                vxlan: None,
            },
        );
        Ok(())
    }

    async fn delete_link(&self, name: &str) -> Result<(), KernelError> {
        let mut s = self.lock();
        if s.links.remove(name).is_none() {
            return Err(KernelError::NotFound(format!("device {name}")));
        }
        // The kernel drops everything attached to a device with it.
        s.routes.retain(|_, r| r.dev() != Some(name));
        s.neighbours.retain(|n| n.dev != name);
        s.fdb.retain(|e| e.dev != name);
        Ok(())
    }

    async fn flush_addresses(&self, name: &str) -> Result<(), KernelError> {
        let mut s = self.lock();
        let link = s
            .links
            .get_mut(name)
            .ok_or_else(|| KernelError::NotFound(format!("device {name}")))?;
        link.addresses.clear();
        Ok(())
    }

    async fn dump_neighbours(&self, dev: &str) -> Result<Vec<Neighbour>, KernelError> {
        let mut s = self.lock();
        s.neighbour_dumps += 1;
        Self::require_link(&s, dev)?;
        Ok(s.neighbours
            .iter()
            .filter(|n| n.dev == dev)
            .cloned()
            .collect())
    }

    async fn replace_neighbour(&self, n: &Neighbour) -> Result<(), KernelError> {
        let mut s = self.lock();
        Self::require_link(&s, &n.dev)?;
        s.neighbours.retain(|o| !(o.dev == n.dev && o.ip == n.ip));
        s.neighbours.insert(n.clone());
        Ok(())
    }

    async fn delete_neighbour(&self, n: &Neighbour) -> Result<(), KernelError> {
        let mut s = self.lock();
        let before = s.neighbours.len();
        s.neighbours.retain(|o| !(o.dev == n.dev && o.ip == n.ip));
        if s.neighbours.len() == before {
            return Err(KernelError::NotFound(format!("neighbour {}", n.ip)));
        }
        Ok(())
    }

    async fn dump_fdb(&self, dev: &str) -> Result<Vec<FdbEntry>, KernelError> {
        let s = self.lock();
        Self::require_link(&s, dev)?;
        Ok(s.fdb.iter().filter(|e| e.dev == dev).cloned().collect())
    }

    async fn replace_fdb(&self, e: &FdbEntry) -> Result<(), KernelError> {
        let mut s = self.lock();
        Self::require_link(&s, &e.dev)?;
        s.fdb.retain(|o| !(o.dev == e.dev && o.mac == e.mac));
        s.fdb.insert(e.clone());
        Ok(())
    }

    async fn delete_fdb(&self, e: &FdbEntry) -> Result<(), KernelError> {
        if self.lock().fdb.remove(e) {
            Ok(())
        } else {
            Err(KernelError::NotFound("fdb entry".into()))
        }
    }

    async fn set_sysctl(&self, path: &str, value: &str) -> Result<(), KernelError> {
        self.lock().sysctls.insert(path.into(), value.into());
        Ok(())
    }
}
