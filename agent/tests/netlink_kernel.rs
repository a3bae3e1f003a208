//! The rtnetlink kernel against a real kernel, inside a throw-away network namespace.
//! Needs root: `cargo test -p agent --test netlink_kernel -- --ignored`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::time::Instant;

use agent::dataplane::apply::{Dataplane, Refresh};
use agent::dataplane::kernel::Kernel;
use agent::dataplane::netlink::NetlinkKernel;
use agent::dataplane::ownership::OwnershipPolicy;
use agent::dataplane::route_table::RouteTable;
use agent::dataplane::types::DesiredState;
use agent::dataplane::types::{
    FdbEntry, Neighbour, PROTO_BIRD, PROTO_BOOT, PROTO_CALICO, Route, RouteTarget, VxlanDevice,
};
use lab::Netns;
use nix::sched::{CloneFlags, setns};

/// Runs `f` on a thread that has entered `ns`, with its own tokio runtime.
fn in_netns<F, Fut>(ns: &Netns, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let path = ns.path();
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        setns(file, CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(f());
    })
    .join()
    .expect("test thread");
}

/// VXLAN towards one remote node (its block through vxlan.calico with the neighbour and
/// FDB entry of its VTEP), a local blackhole and a route to a third node over eth0.
fn vxlan_desired(vni: u32) -> DesiredState {
    let remote_vtep: std::net::Ipv4Addr = "10.244.2.0".parse().expect("ip");
    let mac = [0x66, 1, 2, 3, 4, 5];
    let routes = [
        Route {
            dst: "10.244.2.0/26".parse().expect("cidr"),
            target: RouteTarget::Gateway {
                via: remote_vtep.into(),
                dev: Some("vxlan.calico".into()),
                onlink: true,
            },
            protocol: PROTO_CALICO,
        },
        Route {
            dst: "10.244.1.0/26".parse().expect("cidr"),
            target: RouteTarget::Blackhole,
            protocol: PROTO_BIRD,
        },
        Route {
            dst: "10.244.3.0/26".parse().expect("cidr"),
            target: RouteTarget::Gateway {
                via: "10.0.0.3".parse().expect("ip"),
                dev: Some("eth0".into()),
                onlink: false,
            },
            protocol: PROTO_BIRD,
        },
    ];
    DesiredState {
        routes: routes
            .iter()
            .map(|r| (r.dst, r.clone()))
            .collect::<BTreeMap<_, _>>(),
        vxlan_devices: vec![VxlanDevice {
            name: "vxlan.calico".into(),
            vni,
            port: 4789,
            parent: "eth0".into(),
            local: "10.0.0.1".parse().expect("ip"),
            mac: [0x66, 0xaa, 0xbb, 0xcc, 0xdd, 0xee],
            mtu: 1450,
            address: Some("10.244.1.0".parse().expect("ip")),
        }],
        neighbours: BTreeSet::from([Neighbour {
            dev: "vxlan.calico".into(),
            ip: remote_vtep.into(),
            mac,
        }]),
        fdb: BTreeSet::from([FdbEntry {
            dev: "vxlan.calico".into(),
            mac,
            dst: "10.0.0.2".parse().expect("ip"),
        }]),
        ..DesiredState::default()
    }
}

/// The kernel holds the neighbour line `neigh` and the FDB line `fdb` on VXLAN device
/// `dev` (`family`: `-4` or `-6`).
fn assert_vtep_entries(ns: &Netns, family: &str, dev: &str, neigh: &str, fdb: &str) {
    let neighbours = ns
        .ip(&[family, "neigh", "show", "dev", dev])
        .expect("neigh");
    assert!(neighbours.contains(neigh), "{neighbours}");
    let entries = ns.sh(&format!("bridge fdb show dev {dev}")).expect("fdb");
    assert!(entries.contains(fdb), "{entries}");
}

/// The remote VTEP's neighbour and FDB entry of [`vxlan_desired`] are in the kernel.
fn assert_remote_vtep_entries(ns: &Netns) {
    assert_vtep_entries(
        ns,
        "-4",
        "vxlan.calico",
        "10.244.2.0 lladdr 66:01:02:03:04:05 PERMANENT",
        "66:01:02:03:04:05 dst 10.0.0.2 self permanent",
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p agent --test netlink_kernel -- --ignored"]
fn dataplane_programs_vxlan_routes_neighbours_and_fdb_in_a_real_kernel() {
    lab::remove_leftovers();
    let ns = Netns::create("nlk").expect("netns");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])
    .expect("veth");
    ns.ip(&["link", "set", "eth0p", "up"]).expect("up");
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "eth0"])
        .expect("addr");
    ns.ip(&["link", "set", "eth0", "up"]).expect("up");

    in_netns(&ns, || async {
        let kernel = NetlinkKernel::connect().expect("netlink");
        let mut dp = Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()));
        dp.set_desired(vxlan_desired(4096));
        let report = dp.apply(Instant::now()).await.expect("apply");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        // A second pass finds nothing to do.
        let again = dp.apply(Instant::now()).await.expect("apply");
        assert_eq!(
            (
                again.routes_added,
                again.routes_removed,
                again.other_changes
            ),
            (0, 0, 0)
        );
        let neigh = dp
            .kernel()
            .dump_neighbours("vxlan.calico")
            .await
            .expect("neigh");
        assert_eq!(neigh.len(), 1);
        let fdb = dp.kernel().dump_fdb("vxlan.calico").await.expect("fdb");
        assert_eq!(fdb.len(), 1);
    });

    let routes = ns.ip(&["route", "show"]).expect("routes");
    assert!(
        routes.contains("blackhole 10.244.1.0/26 proto bird"),
        "{routes}"
    );
    assert!(
        routes.contains("10.244.2.0/26 via 10.244.2.0 dev vxlan.calico proto 80 onlink"),
        "{routes}"
    );
    assert!(
        routes.contains("10.244.3.0/26 via 10.0.0.3 dev eth0 proto bird"),
        "{routes}"
    );
    let link = ns
        .ip(&["-d", "link", "show", "vxlan.calico"])
        .expect("link");
    assert!(
        link.contains("mtu 1450") && link.contains("vxlan id 4096"),
        "{link}"
    );
    assert!(link.contains("dstport 4789"), "{link}");
    assert_remote_vtep_entries(&ns);

    // A changed VNI cannot be edited in place: one pass makes the device again, with the
    // neighbour, FDB entry and route that went with the old one.
    in_netns(&ns, || async {
        let kernel = NetlinkKernel::connect().expect("netlink");
        let mut dp = Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()));
        dp.set_desired(vxlan_desired(4096));
        dp.apply(Instant::now()).await.expect("apply");
        dp.set_desired(vxlan_desired(4097));
        let report = dp
            .apply_with(Instant::now(), Refresh::NONE)
            .await
            .expect("apply");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let again = dp.apply(Instant::now()).await.expect("apply");
        assert_eq!((again.routes_added, again.other_changes), (0, 0));
    });
    let link = ns
        .ip(&["-d", "link", "show", "vxlan.calico"])
        .expect("link");
    assert!(link.contains("vxlan id 4097"), "{link}");
    assert_remote_vtep_entries(&ns);
    let routes = ns.ip(&["route", "show"]).expect("routes");
    assert!(
        routes.contains("10.244.2.0/26 via 10.244.2.0 dev vxlan.calico proto 80 onlink"),
        "{routes}"
    );

    // Drift: delete a route by hand; the next pass puts it back, and only it.
    ns.ip(&["route", "del", "10.244.3.0/26"]).expect("del");
    in_netns(&ns, || async {
        let kernel = NetlinkKernel::connect().expect("netlink");
        let mut table = RouteTable::new(OwnershipPolicy::default());
        let want = Route {
            dst: "10.244.3.0/26".parse().expect("cidr"),
            target: RouteTarget::Gateway {
                via: "10.0.0.3".parse().expect("ip"),
                dev: Some("eth0".into()),
                onlink: false,
            },
            protocol: PROTO_BIRD,
        };
        let mut desired = BTreeMap::new();
        desired.insert(want.dst, want);
        // Everything else owned (the blackhole, the vxlan route) is not desired any more.
        table.set_desired(desired);
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!((report.added, report.removed), (1, 2));
    });
    let routes = ns.ip(&["route", "show"]).expect("routes");
    assert!(
        routes.contains("10.244.3.0/26 via 10.0.0.3 dev eth0 proto bird"),
        "{routes}"
    );
    assert!(!routes.contains("blackhole"), "{routes}");
}

#[test]
#[ignore = "needs root netns: cargo test -p agent --test netlink_kernel -- --ignored"]
fn dataplane_programs_ipv6_vxlan_in_a_real_kernel() {
    lab::remove_leftovers();
    let ns = Netns::create("nlk6").expect("netns");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])
    .expect("veth");
    ns.ip(&["link", "set", "eth0p", "up"]).expect("up");
    ns.ip(&["-6", "addr", "add", "fd00::1/64", "dev", "eth0", "nodad"])
        .expect("addr");
    ns.ip(&["link", "set", "eth0", "up"]).expect("up");
    let device = "vxlan-v6.calico";
    let remote_vtep: std::net::IpAddr = "fd10::2:0".parse().expect("ip");
    let mac = [0x66, 1, 2, 3, 4, 6];
    let desired = DesiredState {
        routes: [Route {
            dst: "fd10::2:0/122".parse().expect("cidr"),
            target: RouteTarget::Gateway {
                via: remote_vtep,
                dev: Some(device.into()),
                onlink: true,
            },
            protocol: PROTO_CALICO,
        }]
        .into_iter()
        .map(|r| (r.dst, r))
        .collect(),
        vxlan_devices: vec![VxlanDevice {
            name: device.into(),
            vni: 4096,
            port: 4789,
            parent: "eth0".into(),
            local: "fd00::1".parse().expect("ip"),
            mac: [0x66, 0xaa, 0xbb, 0xcc, 0xdd, 0xef],
            mtu: 1430,
            address: Some("fd10::1:0".parse().expect("ip")),
        }],
        neighbours: BTreeSet::from([Neighbour {
            dev: device.into(),
            ip: remote_vtep,
            mac,
        }]),
        fdb: BTreeSet::from([FdbEntry {
            dev: device.into(),
            mac,
            dst: "fd00::2".parse().expect("ip"),
        }]),
        ..DesiredState::default()
    };
    in_netns(&ns, || async move {
        let kernel = NetlinkKernel::connect().expect("netlink");
        let mut dp = Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()));
        dp.set_desired(desired);
        let report = dp.apply(Instant::now()).await.expect("apply");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        // A second pass finds nothing to do: the device's own link-local address, the
        // NDP entry and the FDB entry all read back as what was asked for.
        let again = dp.apply(Instant::now()).await.expect("apply");
        assert_eq!(
            (
                again.routes_added,
                again.routes_removed,
                again.other_changes
            ),
            (0, 0, 0),
            "{:?}",
            again.failures
        );
    });
    let routes = ns.ip(&["-6", "route", "show"]).expect("routes");
    assert!(
        routes.lines().any(|l| l
            .starts_with("fd10::2:0/122 via fd10::2:0 dev vxlan-v6.calico proto 80")
            && l.contains(" onlink")),
        "{routes}"
    );
    let link = ns.ip(&["-d", "link", "show", device]).expect("link");
    assert!(
        link.contains("mtu 1430")
            && link.contains("vxlan id 4096")
            && link.contains("local fd00::1"),
        "{link}"
    );
    let addrs = ns.ip(&["-6", "addr", "show", "dev", device]).expect("addr");
    assert!(addrs.contains("inet6 fd10::1:0/128"), "{addrs}");
    assert_vtep_entries(
        &ns,
        "-6",
        device,
        "fd10::2:0 lladdr 66:01:02:03:04:06 PERMANENT",
        "66:01:02:03:04:06 dst fd00::2 self permanent",
    );

    // A fresh agent that wants none of it removes the device and its route.
    in_netns(&ns, || async {
        let kernel = NetlinkKernel::connect().expect("netlink");
        let mut dp = Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()));
        dp.set_desired(DesiredState::default());
        let report = dp.apply(Instant::now()).await.expect("apply");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
    });
    let link = ns.ip(&["-d", "link", "show", device]);
    assert!(link.is_err(), "device left behind: {link:?}");
    let routes = ns.ip(&["-6", "route", "show"]).expect("routes");
    assert!(!routes.contains("fd10::"), "{routes}");
}

/// A pod route the agent no longer wants (its endpoint moved to another address on the
/// same veth, as when a pod's sandbox is recreated) really leaves the kernel: a delete
/// that does not match the route's link scope fails with "no such process", which must
/// not pass for "already gone".
#[test]
#[ignore = "needs root netns: cargo test -p agent --test netlink_kernel -- --ignored"]
fn an_unwanted_pod_route_on_a_live_veth_is_removed_from_the_kernel() {
    lab::remove_leftovers();
    let ns = Netns::create("nlkwl").expect("netns");
    ns.ip(&[
        "link",
        "add",
        "cali0123456789a",
        "type",
        "veth",
        "peer",
        "name",
        "podside",
    ])
    .expect("veth");
    ns.ip(&["link", "set", "cali0123456789a", "up"])
        .expect("up");
    ns.ip(&["link", "set", "podside", "up"]).expect("up");
    // What the CNI plugin adds for the old and for the new address of the pod.
    for ip in ["10.244.0.37", "10.244.0.38"] {
        ns.ip(&[
            "route",
            "add",
            ip,
            "dev",
            "cali0123456789a",
            "scope",
            "link",
            "proto",
            "boot",
        ])
        .expect("pod route");
    }
    in_netns(&ns, || async {
        let kernel = NetlinkKernel::connect().expect("netlink");
        let mut table = RouteTable::new(OwnershipPolicy::default()).with_grace(Default::default());
        let keep = Route {
            dst: "10.244.0.37/32".parse().expect("cidr"),
            target: RouteTarget::Device {
                dev: "cali0123456789a".into(),
            },
            protocol: PROTO_BOOT,
        };
        table.set_desired(BTreeMap::from([(keep.dst, keep)]));
        let report = table
            .reconcile(&kernel, Instant::now())
            .await
            .expect("pass");
        assert_eq!((report.added, report.removed), (0, 1), "{report:?}");
    });
    let routes = ns.ip(&["route", "show"]).expect("routes");
    assert!(
        routes.contains("10.244.0.37 dev cali0123456789a scope link"),
        "{routes}"
    );
    assert!(!routes.contains("10.244.0.38"), "{routes}");
}
