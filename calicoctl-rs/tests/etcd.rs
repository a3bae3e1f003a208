//! calicoctl against a real etcd (`etcd` from Debian's etcd-server on PATH): the issue's
//! "done when" flow with DATASTORE_TYPE=etcdv3.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use lab::etcd::EtcdServer;

fn calicoctl(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_calicoctl"))
        .args(args)
        .env("DATASTORE_TYPE", "etcdv3")
        .env("ETCD_ENDPOINTS", endpoints)
        .env_remove("CALICO_DATASTORE_PATH")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn apply_get_switch_mode_and_reject_bad_yaml_on_etcd() {
    let etcd = EtcdServer::start_local().unwrap();
    let ep = etcd.endpoints().join(",");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/");
    let (code, out, err) = calicoctl(&ep, &["apply", "-f", &format!("{root}ippool.yaml")]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Successfully applied 1 'IPPool' resource(s)\n"),
        "{err}"
    );
    let (_, wide, _) = calicoctl(&ep, &["get", "ippool", "-o", "wide"]);
    assert_eq!(
        wide,
        "NAME                  CIDR            NAT    IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR   \n\
         default-ipv4-ippool   10.244.0.0/16   true   Never      Never       false      false              all()      \n\n"
    );
    let (code, _, err) = calicoctl(&ep, &["apply", "-f", &format!("{root}ippool-ipip.yaml")]);
    assert_eq!(code, 0, "{err}");
    let (_, wide, _) = calicoctl(&ep, &["get", "ippool", "-o", "wide"]);
    assert!(wide.contains("   true   Always     Never   "), "{wide}");
    // A YAML round trip through etcd is a no-op.
    let (_, yaml, _) = calicoctl(&ep, &["get", "ippool", "-o", "yaml"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pools.yaml");
    std::fs::write(&f, &yaml).unwrap();
    assert_eq!(calicoctl(&ep, &["apply", "-f", f.to_str().unwrap()]).0, 0);
    assert_eq!(calicoctl(&ep, &["get", "ippool", "-o", "yaml"]).1, yaml);
    // A bad document leaves etcd as it was.
    std::fs::write(
        &f,
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p2}\nspec: {cidr: 10.245.0.0/16}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p3}\nspec: {cidr: 10.246.0.0/16, blockSize: 33}\n",
    )
    .unwrap();
    let (code, out, err) = calicoctl(&ep, &["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "Failed to apply any 'IPPool' resources: [error with field IPPool.Spec.BlockSize = '33' (IPv4 block size must be between 20 and 32)]\n"
    );
    assert_eq!(calicoctl(&ep, &["get", "ippool", "-o", "yaml"]).1, yaml);
}
