//! `ClusterState`: the agent's read-only cache of everything it computes from — nodes,
//! pools, BGP peers and configuration, Felix configuration, workload endpoints, IPAM blocks
//! and affinities — kept by the syncer from one ordered watch on `/calico/`.

use std::collections::{BTreeMap, HashMap};

use datastore::keys;
use datastore::model::ipam::{AffinityState, AllocationBlock, BlockAffinity, attr};
use datastore::model::{
    BFDConfiguration, BGPConfiguration, BGPFilter, BGPPeer, FelixConfiguration, IPPool, Node,
    Resource, WorkloadEndpoint,
};
use datastore::{KeyValue, Revision};
use ipnet::IpNet;
use tracing::warn;

/// The cluster as the agent last saw it. Owned by the syncer; consumers get `Arc` clones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    pub nodes: BTreeMap<String, Node>,
    pub pools: BTreeMap<String, IPPool>,
    pub bgp_peers: BTreeMap<String, BGPPeer>,
    /// `default` and the per-node `node.<name>` overrides.
    pub bgp_configs: BTreeMap<String, BGPConfiguration>,
    /// `default` and the per-node `node.<name>` overrides.
    pub felix_configs: BTreeMap<String, FelixConfiguration>,
    pub bfd_configs: BTreeMap<String, BFDConfiguration>,
    pub bgp_filters: BTreeMap<String, BGPFilter>,
    /// BGPFilters whose stored version was refused (it does not decode or breaks a rule),
    /// with why: node status says so on the sessions that name them.
    pub refused_filters: BTreeMap<String, String>,
    /// Keyed by `<namespace>/<name>`.
    pub workloads: BTreeMap<String, WorkloadEndpoint>,
    pub blocks: BTreeMap<IpNet, AllocationBlock>,
    /// Keyed by (node, block).
    pub affinities: BTreeMap<(String, IpNet), BlockAffinity>,
    /// The datastore revision this state reflects.
    pub revision: Revision,
    /// Which parts changed, and when: every node hears every write in the cluster, and a
    /// consumer that compares these with what it last computed from skips the work none
    /// of its inputs need.
    pub generations: Generations,
    /// The same, per node, for the writes that concern one node: a consumer computing for
    /// its own node skips the other nodes' IPAM writes and endpoints.
    pub node_generations: NodeGenerations,
}

/// Per node, the [`Generations`] counter at which the part of the state concerning that
/// node last changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeGenerations {
    /// The node's affinities, the blocks it hosts, the blocks holding its borrowed addresses.
    ipam: HashMap<String, u64>,
    /// The endpoints on the node.
    workloads: HashMap<String, u64>,
}

impl NodeGenerations {
    /// Stamps every node the state concerns with the state's current counters, as after a
    /// relist: each one may have changed.
    fn stamped(state: &ClusterState) -> NodeGenerations {
        let mut out = NodeGenerations::default();
        let g = state.generations;
        for (node, _) in state.affinities.keys() {
            out.ipam.insert(node.clone(), g.ipam);
        }
        for block in state.blocks.values() {
            for node in nodes_of_block(block) {
                out.ipam.insert(node.to_string(), g.ipam);
            }
        }
        for wep in state.workloads.values() {
            out.workloads.insert(wep.spec.node.clone(), g.workloads);
        }
        out
    }
}

/// The nodes a block concerns: its host and every node an allocation in it was made for.
fn nodes_of_block(block: &AllocationBlock) -> impl Iterator<Item = &str> {
    block.host().into_iter().chain(
        block
            .attributes
            .iter()
            .filter_map(|a| a.secondary.get(attr::NODE).map(String::as_str)),
    )
}

/// Counters, one per part of [`ClusterState`], bumped whenever that part changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generations {
    pub nodes: u64,
    /// What an operator writes: pools, BGP peers, configurations and filters, Felix and
    /// BFD configuration.
    pub config: u64,
    pub workloads: u64,
    /// IPAM blocks and block affinities.
    pub ipam: u64,
}

impl Generations {
    /// Every counter advanced: a state whose parts may all have changed.
    fn all_advanced(self) -> Generations {
        Generations {
            nodes: self.nodes + 1,
            config: self.config + 1,
            workloads: self.workloads + 1,
            ipam: self.ipam + 1,
        }
    }
}

/// The part of the state a key changes (which counter of [`Generations`] it advances).
#[derive(Debug, Clone, Copy)]
enum Part {
    Nodes,
    Config,
    Workloads,
    Ipam,
}

/// The part of the state a key belongs to; `None` for keys the state does not hold.
fn part_of(kind: &KeyKind<'_>) -> Option<Part> {
    match kind {
        KeyKind::Resource { plural, .. } => match *plural {
            p if p == Node::PLURAL => Some(Part::Nodes),
            p if p == WorkloadEndpoint::PLURAL => Some(Part::Workloads),
            p if [
                IPPool::PLURAL,
                BGPPeer::PLURAL,
                BGPConfiguration::PLURAL,
                FelixConfiguration::PLURAL,
                BFDConfiguration::PLURAL,
                BGPFilter::PLURAL,
            ]
            .contains(&p) =>
            {
                Some(Part::Config)
            }
            _ => None,
        },
        KeyKind::Block(_) | KeyKind::Affinity(..) => Some(Part::Ipam),
        KeyKind::Other => None,
    }
}

/// Which part of the key space a key belongs to.
#[derive(Clone)]
enum KeyKind<'a> {
    Resource { plural: &'a str, name: &'a str },
    Block(IpNet),
    Affinity(String, IpNet),
    Other,
}

fn classify(key: &str) -> KeyKind<'_> {
    if let Some(rest) = key.strip_prefix(keys::RESOURCES_PREFIX) {
        if let Some((plural, name)) = rest.split_once('/') {
            return KeyKind::Resource { plural, name };
        }
    } else if key.starts_with(keys::BLOCKS_PREFIX) {
        if let Some(cidr) = keys::parse_block(key) {
            return KeyKind::Block(cidr);
        }
    } else if let Some((node, cidr)) = keys::parse_affinity(key) {
        return KeyKind::Affinity(node, cidr);
    }
    KeyKind::Other
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            // One bad value must not take the agent down; it is skipped and reported.
            warn!(key, error = %e, "ignoring a datastore value that does not decode");
            None
        }
    }
}

/// A block that decodes and is consistent ([`AllocationBlock::validate`]); a corrupt one
/// is skipped with a line naming it, rather than panicking later.
fn decode_block(key: &str, value: &[u8]) -> Option<AllocationBlock> {
    let block = decode::<AllocationBlock>(key, value)?;
    match block.validate() {
        Ok(()) => Some(block),
        Err(reason) => {
            warn!(key, reason, "ignoring a corrupt IPAM block");
            None
        }
    }
}

/// An operator's resource (IPPool, BGPPeer, BGPConfiguration, FelixConfiguration) is held
/// to calicoctl's rules: one written past calicoctl with impossible values (a CIDR that is
/// no CIDR, an AS 0) is skipped with a line naming the key, as one that does not decode.
/// Nodes and endpoints, written by calico-node and the CNI plugin, are taken as decoded.
fn decode_checked<R: Resource>(key: &str, value: &[u8]) -> Option<R> {
    checked(key, value).ok()
}

/// [`decode_checked`], with why a value was refused.
fn checked<R: Resource>(key: &str, value: &[u8]) -> Result<R, String> {
    let mut r: R = serde_json::from_slice(value).map_err(|e| {
        warn!(key, error = %e, "ignoring a datastore value that does not decode");
        e.to_string()
    })?;
    r.set_defaults();
    r.validate().map_err(|e| {
        warn!(key, error = %e, "ignoring an invalid {} in the datastore", R::KIND);
        e.to_string()
    })?;
    Ok(r)
}

fn put_checked<R: Resource + PartialEq>(
    map: &mut BTreeMap<String, R>,
    key: &str,
    name: &str,
    value: &[u8],
) -> bool {
    put_or_keep(map, name.to_string(), decode_checked::<R>(key, value), key)
}

fn put_resource<R: Resource + PartialEq>(
    map: &mut BTreeMap<String, R>,
    key: &str,
    name: &str,
    value: &[u8],
) -> bool {
    put_or_keep(map, name.to_string(), decode::<R>(key, value), key)
}

/// Stores a value that decoded (and passed its checks). One that did not leaves the last
/// good version in place: a bad write must not take a pool, a peering or a pod's route
/// away (only a delete does); at a relist, with no earlier version, it is simply absent.
/// True when the map changed (a write of what it already held changes nothing).
fn put_or_keep<K: Ord, V: PartialEq>(
    map: &mut BTreeMap<K, V>,
    k: K,
    value: Option<V>,
    key: &str,
) -> bool {
    match value {
        Some(v) => {
            if map.get(&k) == Some(&v) {
                return false;
            }
            map.insert(k, v);
            true
        }
        None if map.contains_key(&k) => {
            warn!(key, "keeping the last valid version of this key");
            false
        }
        None => false,
    }
}

impl ClusterState {
    /// Builds the state from a full listing of `/calico/`.
    pub fn from_listing(items: &[KeyValue], revision: Revision) -> ClusterState {
        let mut state = ClusterState::default();
        for kv in items {
            state.put(&kv.key, &kv.value);
        }
        state.revision = revision;
        state
    }

    /// Applies a created or updated key; true when the state changed.
    pub fn put(&mut self, key: &str, value: &[u8]) -> bool {
        let kind = classify(key);
        let Some(part) = part_of(&kind) else {
            return false;
        };
        let before = self.nodes_concerned(&kind);
        let changed = match kind.clone() {
            KeyKind::Resource { plural, name } => match plural {
                p if p == Node::PLURAL => put_resource(&mut self.nodes, key, name, value),
                p if p == IPPool::PLURAL => put_checked(&mut self.pools, key, name, value),
                p if p == BGPPeer::PLURAL => put_checked(&mut self.bgp_peers, key, name, value),
                p if p == BGPConfiguration::PLURAL => {
                    put_checked(&mut self.bgp_configs, key, name, value)
                }
                p if p == FelixConfiguration::PLURAL => {
                    put_checked(&mut self.felix_configs, key, name, value)
                }
                p if p == BFDConfiguration::PLURAL => {
                    put_checked(&mut self.bfd_configs, key, name, value)
                }
                p if p == BGPFilter::PLURAL => {
                    let filter = checked::<BGPFilter>(key, value);
                    let refusal = match &filter {
                        Ok(_) => self.refused_filters.remove(name).is_some(),
                        Err(why) => {
                            self.refused_filters.insert(name.into(), why.clone())
                                != Some(why.clone())
                        }
                    };
                    let kept =
                        put_or_keep(&mut self.bgp_filters, name.to_string(), filter.ok(), key);
                    refusal || kept
                }
                p if p == WorkloadEndpoint::PLURAL => {
                    put_resource(&mut self.workloads, key, name, value)
                }
                _ => false,
            },
            KeyKind::Block(cidr) => {
                put_or_keep(&mut self.blocks, cidr, decode_block(key, value), key)
            }
            KeyKind::Affinity(node, cidr) => {
                let a = decode::<BlockAffinity>(key, value);
                put_or_keep(&mut self.affinities, (node, cidr), a, key)
            }
            KeyKind::Other => false,
        };
        if changed {
            let after = self.nodes_concerned(&kind);
            self.advance(part, before.into_iter().chain(after));
        }
        changed
    }

    /// Applies a deleted key; true when the state changed.
    pub fn delete(&mut self, key: &str) -> bool {
        let kind = classify(key);
        let Some(part) = part_of(&kind) else {
            return false;
        };
        let before = self.nodes_concerned(&kind);
        let changed = match kind {
            KeyKind::Resource { plural, name } => match plural {
                p if p == Node::PLURAL => self.nodes.remove(name).is_some(),
                p if p == IPPool::PLURAL => self.pools.remove(name).is_some(),
                p if p == BGPPeer::PLURAL => self.bgp_peers.remove(name).is_some(),
                p if p == BGPConfiguration::PLURAL => self.bgp_configs.remove(name).is_some(),
                p if p == FelixConfiguration::PLURAL => self.felix_configs.remove(name).is_some(),
                p if p == BFDConfiguration::PLURAL => self.bfd_configs.remove(name).is_some(),
                p if p == BGPFilter::PLURAL => {
                    let filter = self.bgp_filters.remove(name).is_some();
                    let refusal = self.refused_filters.remove(name).is_some();
                    filter || refusal
                }
                p if p == WorkloadEndpoint::PLURAL => self.workloads.remove(name).is_some(),
                _ => false,
            },
            KeyKind::Block(cidr) => self.blocks.remove(&cidr).is_some(),
            KeyKind::Affinity(node, cidr) => self.affinities.remove(&(node, cidr)).is_some(),
            KeyKind::Other => false,
        };
        if changed {
            self.advance(part, before);
        }
        changed
    }

    /// Advances the counter of `part`, and that of each node in `nodes` for it.
    fn advance(&mut self, part: Part, nodes: impl IntoIterator<Item = String>) {
        let g = &mut self.generations;
        let (per_node, now) = match part {
            Part::Nodes => {
                g.nodes += 1;
                return;
            }
            Part::Config => {
                g.config += 1;
                return;
            }
            Part::Workloads => {
                g.workloads += 1;
                (&mut self.node_generations.workloads, g.workloads)
            }
            Part::Ipam => {
                g.ipam += 1;
                (&mut self.node_generations.ipam, g.ipam)
            }
        };
        for node in nodes {
            per_node.insert(node, now);
        }
    }

    /// The nodes the value at a key concerns (see [`NodeGenerations`]).
    fn nodes_concerned(&self, kind: &KeyKind<'_>) -> Vec<String> {
        match kind {
            KeyKind::Block(cidr) => self
                .blocks
                .get(cidr)
                .map(|b| nodes_of_block(b).map(str::to_string).collect())
                .unwrap_or_default(),
            KeyKind::Affinity(node, _) => vec![node.clone()],
            KeyKind::Resource { plural, name } if *plural == WorkloadEndpoint::PLURAL => self
                .workloads
                .get(*name)
                .map(|w| vec![w.spec.node.clone()])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The IPAM counter at which what concerns `node` last changed (0: never).
    pub fn ipam_generation_of(&self, node: &str) -> u64 {
        self.node_generations.ipam.get(node).copied().unwrap_or(0)
    }

    /// The endpoint counter at which the endpoints on `node` last changed (0: never).
    pub fn workloads_generation_of(&self, node: &str) -> u64 {
        self.node_generations
            .workloads
            .get(node)
            .copied()
            .unwrap_or(0)
    }

    /// After a relist, a state whose every part may have changed: each counter advanced
    /// past `previous`'s and every node stamped with them.
    pub fn advanced_past(&mut self, previous: Generations) {
        self.generations = previous.all_advanced();
        self.node_generations = NodeGenerations::stamped(self);
    }

    /// Blocks confirmed as affine to `node` whose block object exists. Pending and
    /// pendingDeletion claims are never routed or advertised (Calico #6867, #4471), and
    /// neither is an affinity without its block.
    pub fn confirmed_blocks_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = IpNet> + 'a {
        self.affinities_of(node)
            .filter(move |(cidr, aff)| {
                aff.state == AffinityState::Confirmed
                    && !aff.deleted
                    && self
                        .blocks
                        .get(*cidr)
                        .is_some_and(|b| b.host() == Some(node) && !b.deleted)
            })
            .map(|(cidr, _)| *cidr)
    }

    /// Every block affinity of `node`, in any state (a range of the map, not a scan).
    pub fn affinities_of<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a IpNet, &'a BlockAffinity)> + 'a {
        // (node, 0.0.0.0/0) sorts before every other key of the node: V4 before V6, then
        // by address and prefix length.
        let first = (node.to_string(), IpNet::V4(ipnet::Ipv4Net::default()));
        self.affinities
            .range(first..)
            .take_while(move |((n, _), _)| n == node)
            .map(|((_, cidr), aff)| (cidr, aff))
    }

    /// The pool containing `net`, if any.
    pub fn pool_containing(&self, net: &IpNet) -> Option<&IPPool> {
        self.pools.values().find(|p| {
            p.spec
                .cidr
                .parse::<IpNet>()
                .is_ok_and(|cidr| cidr.contains(net))
        })
    }

    /// BGPConfiguration `default`, if present.
    pub fn bgp_default(&self) -> Option<&BGPConfiguration> {
        self.bgp_configs.get("default")
    }

    /// FelixConfiguration `default`, if present.
    pub fn felix_default(&self) -> Option<&FelixConfiguration> {
        self.felix_configs.get("default")
    }

    /// Workload endpoints hosted on `node`.
    pub fn workloads_on<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = &'a WorkloadEndpoint> + 'a {
        self.workloads.values().filter(move |w| w.spec.node == node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease: None,
        }
    }

    #[test]
    fn only_confirmed_affinities_with_their_block_count() {
        let b1: IpNet = "10.0.0.0/26".parse().expect("cidr");
        let b2: IpNet = "10.0.0.64/26".parse().expect("cidr");
        let b3: IpNet = "10.0.0.128/26".parse().expect("cidr");
        let block = |cidr: IpNet| {
            serde_json::to_string(&AllocationBlock::new(cidr, Some("n1"), None)).expect("json")
        };
        let items = vec![
            kv(&keys::block(&b1), &block(b1)),
            kv(
                &keys::affinity("n1", &b1),
                r#"{"state":"confirmed","deleted":false}"#,
            ),
            kv(&keys::block(&b2), &block(b2)),
            kv(
                &keys::affinity("n1", &b2),
                r#"{"state":"pending","deleted":false}"#,
            ),
            // An affinity whose block does not exist (a crashed claim).
            kv(
                &keys::affinity("n1", &b3),
                r#"{"state":"confirmed","deleted":false}"#,
            ),
        ];
        let state = ClusterState::from_listing(&items, 5);
        assert_eq!(
            state.confirmed_blocks_of("n1").collect::<Vec<_>>(),
            vec![b1]
        );
        assert_eq!(state.revision, 5);
    }

    #[test]
    fn each_part_advances_its_own_generation_and_only_on_a_real_change() {
        let mut state = ClusterState::default();
        let b1: IpNet = "10.0.0.0/26".parse().expect("cidr");
        let block =
            serde_json::to_string(&AllocationBlock::new(b1, Some("n1"), None)).expect("json");
        assert!(state.put(&keys::block(&b1), block.as_bytes()));
        let after_block = state.generations;
        assert_eq!(after_block.ipam, 1);
        // The same value again, an IPAM handle, a key nobody reads: nothing changes.
        assert!(!state.put(&keys::block(&b1), block.as_bytes()));
        assert!(!state.put("/calico/ipam/v2/handle/k8s-pod-network.abc", b"{}"));
        assert!(!state.delete("/calico/ipam/v2/handle/k8s-pod-network.abc"));
        assert_eq!(state.generations, after_block);
        let wep = r#"{"kind":"WorkloadEndpoint","apiVersion":"projectcalico.org/v3",
            "metadata":{"name":"n1-k8s-web-eth0","namespace":"default"},
            "spec":{"node":"n1","interfaceName":"cali1","ipNetworks":["10.0.0.1/32"]}}"#;
        assert!(state.put(
            &keys::resource("workloadendpoints", "default/n1-k8s-web-eth0"),
            wep.as_bytes()
        ));
        assert_eq!(
            state.generations,
            Generations {
                workloads: 1,
                ..after_block
            }
        );
        assert!(state.delete(&keys::block(&b1)));
        assert!(!state.delete(&keys::block(&b1)));
        assert_eq!(state.generations.ipam, 2);
        assert_eq!(state.generations.nodes, 0);
        assert_eq!(state.generations.config, 0);
    }

    #[test]
    fn a_node_generation_advances_only_for_the_writes_that_concern_the_node() {
        use datastore::model::ipam::AllocationAttribute;
        let mut state = ClusterState::default();
        let b1: IpNet = "10.0.0.0/26".parse().expect("cidr");
        let b2: IpNet = "10.0.0.64/26".parse().expect("cidr");
        let json = |b: &AllocationBlock| serde_json::to_string(b).expect("json");
        let put = |state: &mut ClusterState, key: &str, value: &str| {
            assert!(state.put(key, value.as_bytes()), "{key} changes the state");
        };
        put(
            &mut state,
            &keys::block(&b1),
            &json(&AllocationBlock::new(b1, Some("n1"), None)),
        );
        let n1 = state.ipam_generation_of("n1");
        assert!(n1 > 0);
        // n2 claims a block: nothing of n1's changes.
        put(
            &mut state,
            &keys::affinity("n2", &b2),
            r#"{"state":"confirmed","deleted":false}"#,
        );
        let mut theirs = AllocationBlock::new(b2, Some("n2"), None);
        put(&mut state, &keys::block(&b2), &json(&theirs));
        assert_eq!(state.ipam_generation_of("n1"), n1);
        assert!(state.ipam_generation_of("n2") > n1);
        // An address of n2's block borrowed by n1 concerns n1, and so does its release.
        theirs.attributes.push(AllocationAttribute {
            handle_id: Some("k8s-pod-network.a".into()),
            secondary: [("node".to_string(), "n1".to_string())].into(),
        });
        theirs.allocations[5] = Some(0);
        theirs.unallocated.retain(|o| *o != 5);
        put(&mut state, &keys::block(&b2), &json(&theirs));
        let borrowed = state.ipam_generation_of("n1");
        assert!(borrowed > n1);
        put(
            &mut state,
            &keys::block(&b2),
            &json(&AllocationBlock::new(b2, Some("n2"), None)),
        );
        assert!(state.ipam_generation_of("n1") > borrowed);
        // Endpoints: per node too.
        let wep = r#"{"kind":"WorkloadEndpoint","apiVersion":"projectcalico.org/v3",
            "metadata":{"name":"n2-k8s-web-eth0","namespace":"default"},
            "spec":{"node":"n2","interfaceName":"cali1","ipNetworks":["10.0.0.65/32"]}}"#;
        put(
            &mut state,
            &keys::resource("workloadendpoints", "default/n2-k8s-web-eth0"),
            wep,
        );
        assert_eq!(state.workloads_generation_of("n1"), 0);
        assert!(state.workloads_generation_of("n2") > 0);
        // A relist: every node the new state concerns is stamped past everything before.
        let before = (state.generations, state.ipam_generation_of("n1"));
        let mut relisted = ClusterState::from_listing(
            &[kv(
                &keys::block(&b1),
                &json(&AllocationBlock::new(b1, Some("n1"), None)),
            )],
            9,
        );
        relisted.advanced_past(before.0);
        assert!(relisted.ipam_generation_of("n1") > before.1);
        assert_eq!(relisted.workloads_generation_of("n2"), 0);
    }

    #[test]
    fn resources_are_decoded_and_bad_values_skipped() {
        let mut state = ClusterState::default();
        state.put(
            &keys::resource("ippools", "p1"),
            r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"p1"},
               "spec":{"cidr":"10.0.0.0/16","blockSize":26,"ipipMode":"Never","vxlanMode":"Always",
               "natOutgoing":false,"nodeSelector":"all()"}}"#
                .as_bytes(),
        );
        state.put(&keys::resource("ippools", "bad"), b"not json");
        assert_eq!(state.pools.len(), 1);
        let net: IpNet = "10.0.1.0/26".parse().expect("cidr");
        assert_eq!(state.pool_containing(&net).map(|p| p.name()), Some("p1"));
        state.delete(&keys::resource("ippools", "p1"));
        assert!(state.pools.is_empty());
    }

    #[test]
    fn resources_with_impossible_values_are_skipped_like_ones_that_do_not_decode() {
        let mut state = ClusterState::default();
        let pool = |name: &str, spec: &str| {
            format!(
                r#"{{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{{"name":"{name}"}},"spec":{spec}}}"#
            )
        };
        state.put(
            &keys::resource("ippools", "good"),
            pool("good", r#"{"cidr":"10.0.0.0/16"}"#).as_bytes(),
        );
        for (name, spec) in [
            ("banana", r#"{"cidr":"banana"}"#),
            ("huge-blocks", r#"{"cidr":"10.1.0.0/16","blockSize":99}"#),
            ("link-local", r#"{"cidr":"169.254.0.0/16"}"#),
        ] {
            state.put(
                &keys::resource("ippools", name),
                pool(name, spec).as_bytes(),
            );
        }
        state.put(
            &keys::resource("bgppeers", "as-zero"),
            br#"{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"as-zero"},"spec":{"peerIP":"10.0.0.9","asNumber":0}}"#,
        );
        assert_eq!(state.pools.keys().collect::<Vec<_>>(), vec!["good"]);
        assert!(state.bgp_peers.is_empty());
    }

    #[test]
    fn a_corrupt_block_is_skipped_and_a_corrupt_update_keeps_the_last_valid_one() {
        let mut state = ClusterState::default();
        let cidr: IpNet = "10.0.1.0/26".parse().expect("cidr");
        let key = keys::block(&cidr);
        let good =
            serde_json::to_string(&AllocationBlock::new(cidr, Some("n1"), None)).expect("json");
        let mut bad: serde_json::Value = serde_json::from_str(&good).expect("json");
        bad["allocations"][3] = serde_json::json!(7);
        // Seen first corrupt (a relist): absent.
        state.put(&key, bad.to_string().as_bytes());
        assert!(!state.blocks.contains_key(&cidr));
        // A corrupt write over a good block: the good one stays (its routes too).
        state.put(&key, good.as_bytes());
        state.put(&key, bad.to_string().as_bytes());
        assert_eq!(
            state.blocks.get(&cidr).and_then(|b| b.host()),
            Some("n1"),
            "the last valid block is kept"
        );
        state.delete(&key);
        assert!(!state.blocks.contains_key(&cidr));
    }

    #[test]
    fn an_invalid_update_of_a_pool_keeps_the_pool_as_it_was() {
        let mut state = ClusterState::default();
        let key = keys::resource("ippools", "p1");
        let pool = |spec: &str| {
            format!(
                r#"{{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{{"name":"p1"}},"spec":{spec}}}"#
            )
        };
        state.put(&key, pool(r#"{"cidr":"10.0.0.0/16"}"#).as_bytes());
        state.put(&key, pool(r#"{"cidr":"banana"}"#).as_bytes());
        state.put(&key, b"not json");
        assert_eq!(
            state.pools.get("p1").map(|p| p.spec.cidr.as_str()),
            Some("10.0.0.0/16")
        );
    }

    #[test]
    fn a_refused_filter_version_keeps_the_last_valid_one_and_says_why() {
        let mut state = ClusterState::default();
        let key = keys::resource("bgpfilters", "f");
        let filter = |rule: &str| {
            format!(
                r#"{{"kind":"BGPFilter","apiVersion":"projectcalico.org/v3","metadata":{{"name":"f"}},"spec":{{"exportV4":[{rule}]}}}}"#
            )
        };
        state.put(&key, filter(r#"{"action":"Reject"}"#).as_bytes());
        assert!(state.refused_filters.is_empty());
        state.put(
            &key,
            filter(r#"{"action":"Reject","cidr":"10.0.0.0/8"}"#).as_bytes(),
        );
        assert_eq!(state.bgp_filters["f"].spec.export_v4[0].cidr, "");
        let why = state.refused_filters.get("f").cloned().unwrap_or_default();
        assert!(why.contains("matchOperator"), "{why}");
        state.put(&key, filter(r#"{"action":"Accept"}"#).as_bytes());
        assert!(state.refused_filters.is_empty());
        state.put(&key, b"not json");
        state.delete(&key);
        assert!(state.bgp_filters.is_empty() && state.refused_filters.is_empty());
    }
}
