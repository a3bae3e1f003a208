//! The kinds of kernel objects the [`OwnedTable`](super::owned_table::OwnedTable)
//! reconciles: tunnel devices, workload sysctls, neighbours and FDB entries. Each says
//! which of the kernel's objects calico-node owns and how one is written and removed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use async_trait::async_trait;
use tracing::info;

use super::delta::DeltaTracker;
use super::kernel::{Kernel, KernelError, LinkInfo};
use super::owned_table::ObjectKind;
use super::ownership::{IPIP_DEVICE, WORKLOAD_PREFIX, is_owned_vxlan_device};
use super::types::{DesiredState, FdbEntry, IpipDevice, Neighbour, VxlanDevice, format_mac};

/// The VXLAN devices of `links` calico-node owns.
fn owned_vxlan_devices(links: &[LinkInfo]) -> impl Iterator<Item = &LinkInfo> {
    links.iter().filter(|l| is_owned_vxlan_device(&l.name))
}

/// The entries `dump` lists on each VXLAN device of `links` calico-node owns; a device
/// gone since the device dump has none (its entries went with it).
async fn on_owned_vxlan_devices<'a, T, Fut>(
    links: &'a [LinkInfo],
    dump: impl Fn(&'a str) -> Fut,
) -> Result<Vec<T>, KernelError>
where
    Fut: Future<Output = Result<Vec<T>, KernelError>>,
{
    let mut all = Vec::new();
    for dev in owned_vxlan_devices(links) {
        match dump(&dev.name).await {
            Ok(entries) => all.extend(entries),
            Err(KernelError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(all)
}

// ===== tunnel devices =====

/// A tunnel device as wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Vxlan(VxlanDevice),
    Ipip(IpipDevice),
}

/// The VXLAN devices and tunl0. tunl0 belongs to the ipip module and cannot be deleted:
/// it is owned while it has an address or IPIP is wanted, and removing it clears its
/// addresses.
pub struct Devices;

impl Devices {
    /// The devices `desired` asks for, by name.
    pub fn wanted(desired: &DesiredState) -> BTreeMap<String, Device> {
        let vxlan = desired
            .vxlan_devices
            .iter()
            .map(|d| (d.name.clone(), Device::Vxlan(d.clone())));
        let ipip = desired
            .ipip
            .iter()
            .map(|d| (IPIP_DEVICE.to_string(), Device::Ipip(d.clone())));
        vxlan.chain(ipip).collect()
    }
}

#[async_trait]
impl ObjectKind for Devices {
    type Key = String;
    type Want = Device;
    type Have = LinkInfo;
    const PLURAL: &'static str = "devices";

    fn satisfied(want: &Device, have: &LinkInfo) -> bool {
        match want {
            Device::Vxlan(dev) => {
                have.up
                    && have.mtu == dev.mtu
                    && have.mac == Some(dev.mac)
                    && have.has_only_address(dev.local.is_ipv6(), dev.address)
                    && have.vxlan.as_ref().is_some_and(|v| {
                        v.vni == dev.vni
                            && v.port == dev.port
                            && v.local == Some(dev.local)
                            && v.parent.as_deref() == Some(dev.parent.as_str())
                    })
            }
            Device::Ipip(dev) => {
                have.up
                    && have.mtu == dev.mtu
                    && have.has_only_address(false, dev.address.map(IpAddr::V4))
            }
        }
    }

    fn describe(name: &String) -> String {
        format!("device {name}")
    }

    async fn read<K: Kernel + ?Sized>(
        _kernel: &K,
        links: &[LinkInfo],
        table: &DeltaTracker<String, Device, LinkInfo>,
    ) -> Result<BTreeMap<String, LinkInfo>, KernelError> {
        let ipip_wanted = table.desired().contains_key(IPIP_DEVICE);
        let tunl0 = links
            .iter()
            .filter(|l| l.name == IPIP_DEVICE && (ipip_wanted || !l.addresses.is_empty()));
        Ok(owned_vxlan_devices(links)
            .chain(tunl0)
            .map(|l| (l.name.clone(), l.clone()))
            .collect())
    }

    async fn write<K: Kernel + ?Sized>(
        kernel: &K,
        name: &String,
        want: &Device,
    ) -> Result<LinkInfo, KernelError> {
        match want {
            Device::Vxlan(dev) => {
                kernel.ensure_vxlan(dev).await?;
                info!(device = %dev.name, vni = dev.vni, mtu = dev.mtu, "configured VXLAN device");
            }
            Device::Ipip(dev) => {
                kernel.ensure_ipip(dev).await?;
                info!(mtu = dev.mtu, "configured tunl0");
            }
        }
        // Read back: what the kernel holds now is the view, not what was asked for.
        kernel
            .link(name)
            .await?
            .ok_or_else(|| KernelError::NotFound(format!("device {name} after configuring it")))
    }

    async fn remove<K: Kernel + ?Sized>(
        kernel: &K,
        name: &String,
        _have: &LinkInfo,
    ) -> Result<(), KernelError> {
        if name == IPIP_DEVICE {
            kernel.flush_addresses(name).await?;
            info!("cleared tunl0: no IPIP pool in use");
        } else {
            kernel.delete_link(name).await?;
            info!(device = %name, "removed device no pool uses any more");
        }
        Ok(())
    }
}

// ===== workload sysctls =====

/// Felix's per-interface sysctls of every `cali*` device, keyed by the device's name and
/// index (a device made again under the same name is a new one). The CNI plugin sets them
/// too; setting them here repairs devices made by an older plugin. /proc/sys cannot be
/// listed cheaply, so the kernel's view is what this table wrote on devices still present.
pub struct WorkloadSysctls;

impl WorkloadSysctls {
    /// The workload devices of `links`.
    pub fn wanted(links: &[LinkInfo]) -> BTreeMap<(String, u32), ()> {
        links
            .iter()
            .filter(|l| l.name.starts_with(WORKLOAD_PREFIX))
            .map(|l| ((l.name.clone(), l.index), ()))
            .collect()
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

#[async_trait]
impl ObjectKind for WorkloadSysctls {
    type Key = (String, u32);
    type Want = ();
    type Have = ();
    const PLURAL: &'static str = "workload sysctls";

    fn satisfied(_: &(), _: &()) -> bool {
        true
    }

    fn describe((name, _): &(String, u32)) -> String {
        format!("sysctls of {name}")
    }

    async fn read<K: Kernel + ?Sized>(
        _kernel: &K,
        _links: &[LinkInfo],
        table: &DeltaTracker<(String, u32), (), ()>,
    ) -> Result<BTreeMap<(String, u32), ()>, KernelError> {
        Ok(table
            .dataplane()
            .keys()
            .filter(|k| table.desired().contains_key(*k))
            .map(|k| (k.clone(), ()))
            .collect())
    }

    async fn write<K: Kernel + ?Sized>(
        kernel: &K,
        (name, _): &(String, u32),
        _: &(),
    ) -> Result<(), KernelError> {
        let mut first_error = None;
        for (path, value) in workload_sysctls(name) {
            match kernel.set_sysctl(&path, value).await {
                // proxy_delay and the IPv6 knobs may be absent; Calico only warns.
                Ok(()) | Err(KernelError::NotFound(_)) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn remove<K: Kernel + ?Sized>(
        _kernel: &K,
        _key: &(String, u32),
        _have: &(),
    ) -> Result<(), KernelError> {
        // The device went with its sysctls: forgetting it is all there is to do.
        Ok(())
    }
}

// ===== neighbours =====

/// Permanent neighbours (a remote VTEP's address -> its MAC) on the VXLAN devices, keyed
/// by device and address.
pub struct Neighbours;

impl Neighbours {
    /// The neighbours `desired` asks for.
    pub fn wanted(desired: &DesiredState) -> BTreeMap<(String, IpAddr), [u8; 6]> {
        desired
            .neighbours
            .iter()
            .map(|n| ((n.dev.clone(), n.ip), n.mac))
            .collect()
    }
}

#[async_trait]
impl ObjectKind for Neighbours {
    type Key = (String, IpAddr);
    type Want = [u8; 6];
    type Have = [u8; 6];
    const PLURAL: &'static str = "neighbours";

    fn satisfied(want: &[u8; 6], have: &[u8; 6]) -> bool {
        want == have
    }

    fn describe((dev, ip): &(String, IpAddr)) -> String {
        format!("neighbour {ip} on {dev}")
    }

    async fn read<K: Kernel + ?Sized>(
        kernel: &K,
        links: &[LinkInfo],
        _table: &DeltaTracker<(String, IpAddr), [u8; 6], [u8; 6]>,
    ) -> Result<BTreeMap<(String, IpAddr), [u8; 6]>, KernelError> {
        let entries = on_owned_vxlan_devices(links, |dev| kernel.dump_neighbours(dev)).await?;
        Ok(entries
            .into_iter()
            .map(|n| ((n.dev, n.ip), n.mac))
            .collect())
    }

    async fn write<K: Kernel + ?Sized>(
        kernel: &K,
        (dev, ip): &(String, IpAddr),
        mac: &[u8; 6],
    ) -> Result<[u8; 6], KernelError> {
        let n = Neighbour {
            dev: dev.clone(),
            ip: *ip,
            mac: *mac,
        };
        kernel.replace_neighbour(&n).await?;
        Ok(*mac)
    }

    async fn remove<K: Kernel + ?Sized>(
        kernel: &K,
        (dev, ip): &(String, IpAddr),
        mac: &[u8; 6],
    ) -> Result<(), KernelError> {
        let n = Neighbour {
            dev: dev.clone(),
            ip: *ip,
            mac: *mac,
        };
        kernel.delete_neighbour(&n).await
    }
}

// ===== FDB entries =====

/// Permanent FDB entries (a remote VTEP's MAC -> its node's address) on the VXLAN devices,
/// keyed by device and MAC: the kernel keeps one remote per MAC, so two wanted remotes
/// for one MAC (two nodes with the same VTEP MAC) are one entry, not two that each write
/// replaces.
pub struct Fdb;

impl Fdb {
    /// The FDB entries `desired` asks for.
    pub fn wanted(desired: &DesiredState) -> BTreeMap<(String, [u8; 6]), IpAddr> {
        desired
            .fdb
            .iter()
            .map(|e| ((e.dev.clone(), e.mac), e.dst))
            .collect()
    }
}

fn fdb_entry((dev, mac): &(String, [u8; 6]), dst: IpAddr) -> FdbEntry {
    FdbEntry {
        dev: dev.clone(),
        mac: *mac,
        dst,
    }
}

#[async_trait]
impl ObjectKind for Fdb {
    type Key = (String, [u8; 6]);
    type Want = IpAddr;
    type Have = IpAddr;
    const PLURAL: &'static str = "FDB entries";

    fn satisfied(want: &IpAddr, have: &IpAddr) -> bool {
        want == have
    }

    fn describe((dev, mac): &(String, [u8; 6])) -> String {
        format!("FDB entry {} on {dev}", format_mac(mac))
    }

    async fn read<K: Kernel + ?Sized>(
        kernel: &K,
        links: &[LinkInfo],
        _table: &DeltaTracker<(String, [u8; 6]), IpAddr, IpAddr>,
    ) -> Result<BTreeMap<(String, [u8; 6]), IpAddr>, KernelError> {
        let entries = on_owned_vxlan_devices(links, |dev| kernel.dump_fdb(dev)).await?;
        Ok(entries
            .into_iter()
            .map(|e| ((e.dev, e.mac), e.dst))
            .collect())
    }

    async fn write<K: Kernel + ?Sized>(
        kernel: &K,
        key: &(String, [u8; 6]),
        dst: &IpAddr,
    ) -> Result<IpAddr, KernelError> {
        kernel.replace_fdb(&fdb_entry(key, *dst)).await?;
        Ok(*dst)
    }

    async fn remove<K: Kernel + ?Sized>(
        kernel: &K,
        key: &(String, [u8; 6]),
        dst: &IpAddr,
    ) -> Result<(), KernelError> {
        kernel.delete_fdb(&fdb_entry(key, *dst)).await
    }
}
