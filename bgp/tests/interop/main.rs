//! Interop with real routers in network namespaces: BIRD 2, FRR 8 and GoBGP 3, over iBGP and
//! eBGP — sessions, routes both ways, withdrawals, TCP MD5, graceful restart — and route
//! reflection between our speaker and two clients, one of them BIRD; plus the standalone
//! example against BIRD. Needs root (namespaces) and the Debian packages `bird2`, `frr`,
//! `gobgpd`; every namespace and daemon is removed when a test ends, pass or fail.
//!
//! Run: `cargo test -p bgp --test interop -- --ignored` (CI runs all tests with
//! `--ignored`).

mod common;
mod example;
mod scenarios;

use lab::bgp_peers::RouterKind;

macro_rules! per_router {
    ($name:ident, $kind:expr) => {
        mod $name {
            use super::*;

            #[test]
            #[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
            fn ibgp_session_exchanges_and_withdraws_routes_both_ways() {
                scenarios::exchange($kind, 64512).expect("scenario");
            }

            #[test]
            #[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
            fn ebgp_session_exchanges_and_withdraws_routes_both_ways() {
                scenarios::exchange($kind, 65001).expect("scenario");
            }

            #[test]
            #[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
            fn md5_with_the_right_password_establishes_and_a_wrong_one_does_not() {
                scenarios::md5($kind).expect("scenario");
            }

            #[test]
            #[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
            fn gtsm_establishes_with_ttl_255_and_drops_ttl_64() {
                scenarios::gtsm($kind).expect("scenario");
            }

            #[test]
            #[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
            fn peer_restart_keeps_learned_routes_until_end_of_rib() {
                scenarios::graceful_restart($kind).expect("scenario");
            }
        }
    };
}

per_router!(bird, RouterKind::Bird);
per_router!(frr, RouterKind::Frr);
per_router!(gobgp, RouterKind::GoBgp);

#[test]
#[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
fn ipv6_transport_session_with_frr_exchanges_ipv6_routes() {
    scenarios::ipv6_transport(RouterKind::Frr).expect("scenario");
}

#[test]
#[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
fn ipv6_transport_session_with_gobgp_exchanges_ipv6_routes() {
    scenarios::ipv6_transport(RouterKind::GoBgp).expect("scenario");
}

#[test]
#[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
fn route_reflection_between_a_bird_client_and_an_frr_client() {
    scenarios::route_reflection(RouterKind::Frr).expect("scenario");
}

#[test]
#[ignore = "needs root netns: cargo test -p bgp -- --ignored"]
fn route_reflection_between_a_bird_client_and_a_gobgp_client() {
    scenarios::route_reflection(RouterKind::GoBgp).expect("scenario");
}
