//! Client tests against the in-memory store.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::*;
use crate::memory::MemoryStore;
use crate::model::any::parse_documents;
use crate::model::ippool::{EncapMode, IPPool, IPPoolSpec};
use crate::model::node::Node;

fn client() -> Client {
    Client::new(Arc::new(MemoryStore::new()))
}

#[tokio::test]
async fn create_sets_defaults_uid_timestamp_and_revision() {
    let c = client();
    let p = c
        .create(IPPool::new(
            "p1",
            IPPoolSpec {
                cidr: "10.1.0.0/16".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(p.spec.block_size, 26);
    assert!(p.metadata.uid.is_some());
    assert!(p.metadata.creation_timestamp.is_some());
    let got: IPPool = c.get("p1").await.unwrap();
    assert_eq!(got, p);
    // The stored value is the v3 object without resourceVersion.
    let kv = c
        .store()
        .get("/calico/resources/v3/projectcalico.org/ippools/p1")
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(v["kind"], "IPPool");
    assert_eq!(v["apiVersion"], "projectcalico.org/v3");
    assert!(v["metadata"].get("resourceVersion").is_none());
    let e = c.create(p.clone()).await.unwrap_err();
    assert_eq!(calico_text(&e), "resource already exists: IPPool(p1)");
}

#[tokio::test]
async fn overlap_checked_on_create_only() {
    let c = client();
    c.create(IPPool::new("a", IPPoolSpec::with_cidr("10.0.0.0/8")))
        .await
        .unwrap();
    let e = c
        .create(IPPool::new("b", IPPoolSpec::with_cidr("10.1.0.0/16")))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("IPPool(b) CIDR overlaps with IPPool(a) CIDR 10.0.0.0/8")
    );
}

#[tokio::test]
async fn update_cas_merge_and_noop() {
    let c = client();
    let p = c
        .create(IPPool::new("a", IPPoolSpec::with_cidr("10.0.0.0/16")))
        .await
        .unwrap();
    let rv0 = p.metadata.resource_version.clone();
    // Same content: no write, same resourceVersion.
    let same = c.update(p.clone()).await.unwrap();
    assert_eq!(same.metadata.resource_version, rv0);
    // Change without resourceVersion: merged, uid kept.
    let mut edit = IPPool::new("a", IPPoolSpec::with_cidr("10.0.0.0/16"));
    edit.spec.ipip_mode = EncapMode::Always;
    let up = c.update(edit).await.unwrap();
    assert_eq!(up.metadata.uid, p.metadata.uid);
    assert_ne!(up.metadata.resource_version, rv0);
    // Stale resourceVersion: conflict.
    let mut stale = p.clone();
    stale.spec.vxlan_mode = EncapMode::Never;
    stale.spec.ipip_mode = EncapMode::CrossSubnet;
    let e = c.update(stale).await.unwrap_err();
    assert!(calico_text(&e).starts_with("update conflict: IPPool(a): resource version"));
    // Immutable CIDR.
    let e = c
        .update(IPPool::new("a", IPPoolSpec::with_cidr("10.0.0.0/24")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("IPPool CIDR cannot be modified"));
    let e = c
        .update(IPPool::new("zz", IPPoolSpec::with_cidr("10.9.0.0/16")))
        .await
        .unwrap_err();
    assert_eq!(
        calico_text(&e),
        "resource does not exist: IPPool(zz) with error: <nil>"
    );
}

#[tokio::test]
async fn apply_list_delete_watch() {
    let c = client();
    let w0 = c.watch::<Node>(0).await.unwrap();
    drop(w0);
    let listing = c.list::<Node>().await.unwrap();
    let mut w = c.watch::<Node>(listing.revision + 1).await.unwrap();
    c.apply(Node::new("n1", Default::default())).await.unwrap();
    c.apply(Node::new("n2", Default::default())).await.unwrap();
    assert_eq!(c.list::<Node>().await.unwrap().items.len(), 2);
    c.delete::<Node>("n1", None).await.unwrap();
    match w.next().await.unwrap().unwrap() {
        ResourceEvent::Put(n) => assert_eq!(n.metadata.name, "n1"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(w.next().await, Some(Ok(ResourceEvent::Put(_)))));
    match w.next().await.unwrap().unwrap() {
        ResourceEvent::Delete { name, .. } => assert_eq!(name, "n1"),
        other => panic!("{other:?}"),
    }
    assert!(c.delete::<Node>("n1", None).await.is_err());
}

#[tokio::test]
async fn batch_checks_everything_before_writing() {
    let c = client();
    c.create(IPPool::new("a", IPPoolSpec::with_cidr("10.0.0.0/16")))
        .await
        .unwrap();
    let text = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: b}\n\
                spec: {cidr: 10.2.0.0/16}\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\n\
                metadata: {name: c}\nspec: {cidr: 10.2.1.0/24}\n";
    let mut docs = parse_documents(text).unwrap();
    let e = c.plan_batch(&mut docs, BatchOp::Apply).await.unwrap_err();
    assert_eq!(e.index, 1);
    assert!(
        e.message.contains("IPPool(c) CIDR overlaps with IPPool(b)"),
        "{}",
        e.message
    );
    let mut docs = parse_documents(text.split("---").next().unwrap()).unwrap();
    let plan = c
        .plan_batch(&mut docs, BatchOp::Create { skip_exists: false })
        .await
        .unwrap();
    assert_eq!(plan.writes(), 1);
    c.write_any(&docs[0], BatchOp::Create { skip_exists: false })
        .await
        .unwrap();
    let plan = c
        .plan_batch(&mut docs, BatchOp::Create { skip_exists: true })
        .await
        .unwrap();
    assert_eq!(plan.writes(), 0);
}
