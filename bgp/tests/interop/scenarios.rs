//! The interop scenarios, each run against BIRD 2, FRR 8 and GoBGP 3 (see `main.rs`).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bgp::{RouteEvent, SpeakerConfig, State};
use lab::bgp_peers::{NeighborSpec, Router, RouterKind, RouterSpec};

use super::common::*;

const WAIT: Duration = Duration::from_secs(30);
const US: u32 = 64512;

fn router_spec(asn: u32, routes4: &[&str], routes6: &[&str]) -> RouterSpec {
    RouterSpec {
        router_id: "10.0.0.2".into(),
        ipv6: Some("fd00::2".into()),
        asn,
        neighbors: vec![NeighborSpec {
            ipv6: true,
            ..NeighborSpec::new("10.0.0.1", US)
        }],
        routes4: routes4.iter().map(|r| r.to_string()).collect(),
        routes6: routes6.iter().map(|r| r.to_string()).collect(),
        install_routes: false,
        bfd: None,
    }
}

fn with_context<T>(r: Result<T>, router: &Router) -> Result<T> {
    r.with_context(|| format!("router logs:\n{}", router.log_tail(30)))
}

/// Session up; routes both ways (IPv4 and IPv6); withdrawals both ways.
pub fn exchange(kind: RouterKind, router_as: u32) -> Result<()> {
    let lab = Lab::new(2)?;
    let router = Router::start(
        kind,
        &lab.nodes[1],
        &lab.path("r"),
        router_spec(router_as, &["10.20.0.0/24"], &["fd00:20::/64"]),
    )?;
    let mut router = router;
    let mut sp = NsSpeaker::start(&lab.nodes[0], speaker_config(US, 1))?;
    sp.add_peer(lab_peer(2, router_as, 1))?;
    sp.originate(&["192.168.10.0/26", "fd00:10::/64"])?;
    let path: Vec<u32> = if router_as == US {
        vec![]
    } else {
        vec![router_as]
    };
    let r = (|| -> Result<()> {
        sp.expect_best("10.20.0.0/24", v4(2), &path)?;
        sp.expect_best("fd00:20::/64", "fd00::2".parse()?, &path)?;
        let ours: Vec<u32> = if router_as == US { vec![] } else { vec![US] };
        eventually("our routes in the router's table", WAIT, || {
            let l = router.learned().unwrap_or_default();
            l.get("192.168.10.0/26")
                .is_some_and(|r| r.next_hop == "10.0.0.1" && r.as_path == ours)
                && l.get("fd00:10::/64")
                    .is_some_and(|r| r.next_hop == "fd00::1")
        })
        .with_context(|| format!("router has {:?}", router.learned()))?;
        let st = sp.status(v4(2)).context("status")?;
        if st.state != State::Established || st.prefixes_accepted < 2 || st.prefixes_advertised < 2
        {
            bail!("status: {st:?}");
        }
        // Withdrawals, our side then theirs.
        sp.withdraw(&["192.168.10.0/26", "fd00:10::/64"])?;
        eventually("our withdrawal in the router's table", WAIT, || {
            let l = router.learned_prefixes();
            !l.contains("192.168.10.0/26") && !l.contains("fd00:10::/64")
        })?;
        router.set_routes(&[], &["fd00:20::/64"])?;
        sp.expect_withdrawn("10.20.0.0/24")?;
        router.set_routes(&[], &[])?;
        sp.expect_withdrawn("fd00:20::/64")?;
        Ok(())
    })();
    with_context(r, &router)
}

/// A session over IPv6 transport (dual-stack listener) carrying IPv6 routes both ways.
pub fn ipv6_transport(kind: RouterKind) -> Result<()> {
    let lab = Lab::new(2)?;
    let spec = RouterSpec {
        router_id: "10.0.0.2".into(),
        ipv6: Some("fd00::2".into()),
        asn: 65001,
        neighbors: vec![NeighborSpec {
            ipv6: true,
            ..NeighborSpec::new("fd00::1", US)
        }],
        routes4: vec![],
        routes6: vec!["fd00:20::/64".into()],
        install_routes: false,
        bfd: None,
    };
    let router = Router::start(kind, &lab.nodes[1], &lab.path("r"), spec)?;
    let mut sp = NsSpeaker::start(
        &lab.nodes[0],
        SpeakerConfig {
            listen: Some("[::]:179".parse()?),
            ..speaker_config(US, 1)
        },
    )?;
    let mut p = lab_peer(2, 65001, 1);
    p.address = "fd00::2".parse()?;
    p.families = vec![bgp::Afi::Ipv6];
    sp.add_peer(p)?;
    sp.originate(&["fd00:10::/64"])?;
    let r = (|| -> Result<()> {
        sp.expect_best("fd00:20::/64", "fd00::2".parse()?, &[65001])?;
        eventually("our IPv6 route in the router's table", WAIT, || {
            router
                .learned()
                .ok()
                .and_then(|l| l.get("fd00:10::/64").cloned())
                .is_some_and(|r| r.next_hop == "fd00::1" && r.as_path == vec![US])
        })
        .with_context(|| format!("router has {:?}", router.learned()))?;
        Ok(())
    })();
    with_context(r, &router)
}

/// TCP MD5: the right password establishes, a wrong one does not.
pub fn md5(kind: RouterKind) -> Result<()> {
    let lab = Lab::new(2)?;
    let mut spec = router_spec(65001, &["10.20.0.0/24"], &[]);
    spec.neighbors[0].password = Some("s3cret-pw".into());
    let router = Router::start(kind, &lab.nodes[1], &lab.path("r"), spec)?;
    let mut sp = NsSpeaker::start(&lab.nodes[0], speaker_config(US, 1))?;
    let mut p = lab_peer(2, 65001, 1);
    p.password = Some("s3cret-pw".into());
    sp.add_peer(p.clone())?;
    let r = (|| -> Result<()> {
        sp.expect_best("10.20.0.0/24", v4(2), &[65001])?;
        p.password = Some("wrong".into());
        sp.update_peer(p)?;
        sp.expect_withdrawn("10.20.0.0/24")?;
        // A bounded look, not a timing assertion: several connect retries' worth.
        sp.drain_for(Duration::from_secs(5));
        let st = sp.status(v4(2)).context("status")?;
        if st.state == State::Established || router.established("10.0.0.1") {
            bail!("established with a wrong MD5 password: {st:?}");
        }
        Ok(())
    })();
    with_context(r, &router)
}

/// GTSM (RFC 5082) on both sides establishes; a router sending with the default TTL (64)
/// is dropped by our minimum TTL of 255.
pub fn gtsm(kind: RouterKind) -> Result<()> {
    let lab = Lab::new(2)?;
    let mut spec = router_spec(65001, &["10.20.0.0/24"], &[]);
    spec.neighbors[0].ttl_security = true;
    // No graceful restart: the restart below must withdraw at once.
    spec.neighbors[0].graceful_restart = false;
    let mut router = Router::start(kind, &lab.nodes[1], &lab.path("r"), spec.clone())?;
    let mut sp = NsSpeaker::start(&lab.nodes[0], speaker_config(US, 1))?;
    let mut p = lab_peer(2, 65001, 1);
    p.ttl_security = Some(1);
    sp.add_peer(p)?;
    let r = (|| -> Result<()> {
        sp.expect_best("10.20.0.0/24", v4(2), &[65001])?;
        spec.neighbors[0].ttl_security = false;
        router.restart(&lab.nodes[1], spec)?;
        sp.expect_withdrawn("10.20.0.0/24")?;
        sp.drain_for(Duration::from_secs(5));
        let st = sp.status(v4(2)).context("status")?;
        if st.state == State::Established {
            bail!("established with a peer sending TTL 64: {st:?}");
        }
        Ok(())
    })();
    with_context(r, &router)
}

/// The router crashes and comes back in graceful-restart recovery with one route fewer: we
/// keep both routes (stale, no withdrawal) until its End-of-RIB, then drop only the missing
/// one.
pub fn graceful_restart(kind: RouterKind) -> Result<()> {
    let lab = Lab::new(2)?;
    let (a, b) = ("10.20.0.0/24", "10.21.0.0/24");
    let mut router = Router::start(
        kind,
        &lab.nodes[1],
        &lab.path("r"),
        router_spec(65001, &[a, b], &[]),
    )?;
    let mut sp = NsSpeaker::start(
        &lab.nodes[0],
        SpeakerConfig {
            graceful_restart_time: 120,
            ..speaker_config(US, 1)
        },
    )?;
    sp.add_peer(lab_peer(2, 65001, 1))?;
    let r = (|| -> Result<()> {
        sp.expect_best(a, v4(2), &[65001])?;
        sp.expect_best(b, v4(2), &[65001])?;
        sp.wait_state(v4(2), State::Established, WAIT)?;
        router.kill();
        let down = sp
            .wait_for(WAIT, |e| matches!(e, RouteEvent::PeerDown { .. }))
            .context("no PeerDown after the crash")?;
        if !matches!(down, RouteEvent::PeerDown { graceful: true, .. }) {
            bail!("not a graceful down: {down:?}");
        }
        sp.drain_for(Duration::from_secs(1));
        let kept = sp.block_on(sp.speaker.learned_routes())?;
        if kept.len() != 2 || !kept.iter().all(|r| r.stale) {
            bail!("routes not kept as stale during the restart: {kept:?}");
        }
        router.restart(&lab.nodes[1], router_spec(65001, &[a], &[]))?;
        sp.expect_withdrawn(b)?;
        if sp.withdrawn_ever(a) {
            bail!("{a} was withdrawn during the restart: {:?}", sp.log);
        }
        let left = sp.block_on(sp.speaker.learned_routes())?;
        if left.len() != 1 || left[0].stale || left[0].prefix != net(a) {
            bail!("after End-of-RIB: {left:?}");
        }
        Ok(())
    })();
    with_context(r, &router)
}

/// Our speaker reflects between two clients, BIRD and `other`: each client sees the other's
/// route with its next hop unchanged, ORIGINATOR_ID and our CLUSTER_LIST.
pub fn route_reflection(other: RouterKind) -> Result<()> {
    let lab = Lab::new(3)?;
    let client = |id: &str, route: &str| RouterSpec {
        router_id: id.into(),
        ipv6: None,
        asn: US,
        neighbors: vec![NeighborSpec::new("10.0.0.1", US)],
        routes4: vec![route.into()],
        routes6: vec![],
        install_routes: false,
        bfd: None,
    };
    let bird = Router::start(
        RouterKind::Bird,
        &lab.nodes[1],
        &lab.path("c1"),
        client("10.0.0.2", "10.20.0.0/24"),
    )?;
    let two = Router::start(
        other,
        &lab.nodes[2],
        &lab.path("c2"),
        client("10.0.0.3", "10.30.0.0/24"),
    )?;
    let cluster: std::net::Ipv4Addr = "1.1.1.1".parse()?;
    let mut sp = NsSpeaker::start(
        &lab.nodes[0],
        SpeakerConfig {
            cluster_id: Some(cluster),
            ..speaker_config(US, 1)
        },
    )?;
    for last in [2, 3] {
        let mut p = lab_peer(last, US, 1);
        p.route_reflector_client = true;
        sp.add_peer(p)?;
    }
    let r = (|| -> Result<()> {
        sp.expect_best("10.20.0.0/24", v4(2), &[])?;
        sp.expect_best("10.30.0.0/24", v4(3), &[])?;
        let reflected = |r: &Router, prefix: &str, nh: &str| {
            r.learned()
                .ok()
                .and_then(|l| l.get(prefix).cloned())
                .is_some_and(|x| {
                    x.next_hop == nh
                        && x.originator_id.as_deref() == Some(nh)
                        && x.cluster_list == vec!["1.1.1.1".to_string()]
                })
        };
        eventually("BIRD's route reflected to the other client", WAIT, || {
            reflected(&two, "10.20.0.0/24", "10.0.0.2")
        })
        .with_context(|| format!("{:?}", two.learned()))?;
        eventually("the other client's route reflected to BIRD", WAIT, || {
            reflected(&bird, "10.30.0.0/24", "10.0.0.3")
        })
        .with_context(|| format!("{:?}", bird.learned()))?;
        Ok(())
    })();
    with_context(with_context(r, &bird), &two)
}
