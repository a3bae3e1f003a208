//! Fuzzes the decoding of every object calico-rs reads from the datastore, as calico-node,
//! calico-ipam and calicoctl do: JSON into the typed object, then the object's checks
//! (defaults and validation for resources, consistency for IPAM blocks), then, for a block
//! that passed, the IPAM operations that index it. The first byte picks the kind. No input
//! may panic.
#![no_main]

use std::collections::BTreeMap;

use datastore::Resource;
use datastore::model::ipam::{AllocationBlock, BlockAffinity, IpamConfig, IpamHandle};
use datastore::model::{
    BGPConfiguration, BGPPeer, ClusterInformation, FelixConfiguration, IPAMConfiguration,
    IPPool, Node, WorkloadEndpoint,
};
use libfuzzer_sys::fuzz_target;

fn resource<R: Resource + serde::de::DeserializeOwned>(json: &[u8]) {
    if let Ok(mut r) = serde_json::from_slice::<R>(json) {
        r.set_defaults();
        let _ = r.validate();
        let _ = r.key();
        let _ = r.ident();
    }
}

fn block(json: &[u8]) {
    let Ok(mut b) = serde_json::from_slice::<AllocationBlock>(json) else {
        return;
    };
    if b.validate().is_err() {
        return;
    }
    // What IPAM does with a block it read: these must hold for any valid block.
    let taken = ipam::block::assign(&mut b, 3, Some("net.fuzz"), &BTreeMap::new());
    let ordinals: Vec<usize> = taken
        .iter()
        .filter_map(|ip| ipam::block::ordinal_of(&b.cidr, *ip))
        .collect();
    let _ = ipam::block::ordinals_of_handle(&b, "net.fuzz");
    ipam::block::release(&mut b, &ordinals);
    assert_eq!(b.validate(), Ok(()), "IPAM left a block inconsistent");
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, json)) = data.split_first() else {
        return;
    };
    match kind % 12 {
        0 => resource::<IPPool>(json),
        1 => resource::<BGPPeer>(json),
        2 => resource::<BGPConfiguration>(json),
        3 => resource::<Node>(json),
        4 => resource::<WorkloadEndpoint>(json),
        5 => resource::<FelixConfiguration>(json),
        6 => resource::<IPAMConfiguration>(json),
        7 => resource::<ClusterInformation>(json),
        8 => block(json),
        9 => {
            let _ = serde_json::from_slice::<BlockAffinity>(json);
        }
        10 => {
            let _ = serde_json::from_slice::<IpamHandle>(json);
        }
        _ => {
            let _ = serde_json::from_slice::<IpamConfig>(json);
        }
    }
});
