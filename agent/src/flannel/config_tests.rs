use super::*;

fn ok(json: &str) -> NetworkConfig {
    match NetworkConfig::parse(json.as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("{json} should parse: {e}"),
    }
}

/// The one field error `json` produces, as `field: reason`.
fn one_error(json: &str) -> FieldError {
    match NetworkConfig::parse(json.as_bytes()) {
        Ok(c) => panic!("{json} should fail, got {c:?}"),
        Err(ConfigError::Json(e)) => panic!("{json}: JSON error {e}"),
        Err(ConfigError::Fields(mut f)) => {
            assert_eq!(f.len(), 1, "{json}: {f:?}");
            f.remove(0)
        }
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test ip")
}

#[test]
fn flannel_defaults_for_a_16() {
    let c = ok(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#);
    assert_eq!(c.network, "10.244.0.0/16".parse::<Ipv4Net>().expect("net"));
    assert_eq!(c.subnet_len, 24);
    // The first subnet is skipped.
    assert_eq!(c.subnet_min, ip("10.244.1.0"));
    assert_eq!(c.subnet_max, ip("10.244.255.0"));
    assert_eq!(c.subnet_count(), 255);
    assert_eq!(
        c.backend,
        BackendConfig {
            kind: BackendType::Vxlan,
            vni: 1,
            port: 8472,
            direct_routing: false,
            mtu: None,
        }
    );
}

#[test]
fn small_networks_get_network_plus_two() {
    let c = ok(r#"{"Network": "10.5.0.0/24"}"#);
    assert_eq!(c.subnet_len, 26);
    assert_eq!(c.subnet_min, ip("10.5.0.64"));
    assert_eq!(c.subnet_max, ip("10.5.0.192"));
    let c = ok(r#"{"Network": "10.5.0.0/22"}"#);
    assert_eq!(c.subnet_len, 24);
    let c = ok(r#"{"Network": "10.5.0.0/23", "SubnetLen": 0}"#);
    assert_eq!(c.subnet_len, 25);
}

#[test]
fn the_documented_example_and_explicit_fields_parse() {
    // Documentation/configuration.md, with the backend calico-rs implements.
    let c = ok(
        r#"{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0",
        "SubnetMax":"10.99.0.0","Backend":{"Type":"host-gw"}}"#,
    );
    assert_eq!(c.subnet_len, 20);
    assert_eq!(c.subnet_min, ip("10.10.0.0"));
    assert_eq!(c.subnet_max, ip("10.99.0.0"));
    assert_eq!(c.backend.kind, BackendType::HostGw);
    let c = ok(
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"VXLAN","VNI":7,"Port":0,"DirectRouting":true,"MTU":1400,"GBP":false,"Learning":false},"EnableIPv4":true,"EnableIPv6":false,"EnableNFTables":false}"#,
    );
    assert_eq!(c.backend.vni, 7);
    assert_eq!(c.backend.port, 8472);
    assert!(c.backend.direct_routing);
    assert_eq!(c.backend.mtu, Some(1400));
}

#[test]
fn a_missing_backend_means_vxlan() {
    assert_eq!(
        ok(r#"{"Network":"10.244.0.0/16"}"#).backend.kind,
        BackendType::Vxlan
    );
}

#[test]
fn fits_checks_length_range_and_alignment() {
    let c = ok(r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.2.0"}"#);
    assert_eq!(c.subnet_count(), 2);
    let fits = |s: &str| c.fits(&s.parse().expect("net"));
    assert!(fits("10.244.1.0/24"));
    assert!(fits("10.244.2.0/24"));
    assert!(!fits("10.244.0.0/24"));
    assert!(!fits("10.244.3.0/24"));
    assert!(!fits("10.244.1.0/25"));
    assert_eq!(c.subnets().count(), 2);
}

#[test]
fn not_json_or_not_an_object() {
    assert!(matches!(
        NetworkConfig::parse(b"{\"Network\": "),
        Err(ConfigError::Json(_))
    ));
    let e = NetworkConfig::parse(b"[1,2]").expect_err("array");
    assert!(e.to_string().contains("not a JSON object"), "{e}");
}

#[test]
fn every_bad_network_is_named() {
    let cases = [
        (r#"{}"#, "missing"),
        (r#"{"Network": 10}"#, "is not a string"),
        (r#"{"Network": "10.244.0.0"}"#, "is not an IPv4 CIDR"),
        (r#"{"Network": "fc00::/64"}"#, "is not an IPv4 CIDR"),
        (r#"{"Network": "10.244.0.0/29"}"#, "too small"),
        (
            r#"{"Network": "10.244.1.0/16"}"#,
            "did you mean 10.244.0.0/16",
        ),
    ];
    for (json, reason) in cases {
        let e = one_error(json);
        assert_eq!(e.field, "Network", "{json}");
        assert!(e.reason.contains(reason), "{json}: {}", e.reason);
    }
}

#[test]
fn every_bad_subnet_len_is_named() {
    let cases = [
        (
            r#"{"Network": "10.244.0.0/16", "SubnetLen": "24"}"#,
            "not a prefix length",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetLen": 33}"#,
            "not a prefix length",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetLen": -1}"#,
            "not a prefix length",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetLen": 31}"#,
            "at most 30",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetLen": 17}"#,
            "fewer than four subnets",
        ),
    ];
    for (json, reason) in cases {
        let e = one_error(json);
        assert_eq!(e.field, "SubnetLen", "{json}");
        assert!(e.reason.contains(reason), "{json}: {}", e.reason);
    }
}

#[test]
fn every_bad_subnet_min_and_max_is_named() {
    let cases = [
        (r#""SubnetMin": 1"#, "SubnetMin", "is not a string"),
        (r#""SubnetMin": "x""#, "SubnetMin", "not an IPv4 address"),
        (
            r#""SubnetMin": "10.245.0.0""#,
            "SubnetMin",
            "not inside Network",
        ),
        (
            r#""SubnetMin": "10.244.1.7""#,
            "SubnetMin",
            "not the start of a /24",
        ),
        (
            r#""SubnetMax": "10.243.0.0""#,
            "SubnetMax",
            "not inside Network",
        ),
        (
            r#""SubnetMax": "10.244.9.128""#,
            "SubnetMax",
            "not the start of a /24",
        ),
        (
            r#""SubnetMin": "10.244.9.0", "SubnetMax": "10.244.3.0""#,
            "SubnetMin",
            "after SubnetMax",
        ),
    ];
    for (fields, field, reason) in cases {
        let json = format!(r#"{{"Network": "10.244.0.0/16", {fields}}}"#);
        let e = one_error(&json);
        assert_eq!(e.field, field, "{json}");
        assert!(e.reason.contains(reason), "{json}: {}", e.reason);
    }
}

#[test]
fn every_bad_backend_field_is_named() {
    let cases = [
        (r#""Backend": "vxlan""#, "Backend", "not an object"),
        (r#""Backend": {"Type": 1}"#, "Backend.Type", "not a string"),
        (
            r#""Backend": {"Type": "udp"}"#,
            "Backend.Type",
            "does not implement",
        ),
        (
            r#""Backend": {"Type": "wireguard"}"#,
            "Backend.Type",
            "does not implement",
        ),
        (
            r#""Backend": {"Type": "bogus"}"#,
            "Backend.Type",
            "not a backend type",
        ),
        (
            r#""Backend": {"Type": "vxlan", "VNI": 0}"#,
            "Backend.VNI",
            "not a VNI",
        ),
        (
            r#""Backend": {"Type": "vxlan", "VNI": 16777216}"#,
            "Backend.VNI",
            "not a VNI",
        ),
        (
            r#""Backend": {"Type": "vxlan", "VNI": "1"}"#,
            "Backend.VNI",
            "not a VNI",
        ),
        (
            r#""Backend": {"Type": "vxlan", "Port": 70000}"#,
            "Backend.Port",
            "not a UDP port",
        ),
        (
            r#""Backend": {"Type": "vxlan", "Port": -1}"#,
            "Backend.Port",
            "not a UDP port",
        ),
        (
            r#""Backend": {"Type": "vxlan", "DirectRouting": "yes"}"#,
            "Backend.DirectRouting",
            "not true or false",
        ),
        (
            r#""Backend": {"Type": "vxlan", "MTU": 20}"#,
            "Backend.MTU",
            "not an MTU",
        ),
        (
            r#""Backend": {"Type": "vxlan", "GBP": true}"#,
            "Backend.GBP",
            "not supported",
        ),
        (
            r#""Backend": {"Type": "vxlan", "Learning": 1}"#,
            "Backend.Learning",
            "not true or false",
        ),
    ];
    for (fields, field, reason) in cases {
        let json = format!(r#"{{"Network": "10.244.0.0/16", {fields}}}"#);
        let e = one_error(&json);
        assert_eq!(e.field, field, "{json}");
        assert!(e.reason.contains(reason), "{json}: {}", e.reason);
    }
}

#[test]
fn ip_family_switches_are_checked() {
    let e = one_error(r#"{"Network": "10.244.0.0/16", "EnableIPv6": true}"#);
    assert_eq!(e.field, "EnableIPv6");
    let e = one_error(r#"{"Network": "10.244.0.0/16", "EnableIPv4": false}"#);
    assert_eq!(e.field, "EnableIPv4");
    let e = one_error(r#"{"Network": "10.244.0.0/16", "EnableIPv4": "yes"}"#);
    assert!(e.reason.contains("not true or false"));
}

#[test]
fn several_bad_fields_are_all_reported() {
    let e = NetworkConfig::parse(
        br#"{"Network": "10.244.0.0/16", "SubnetMin": "nope", "Backend": {"Type": "udp", "VNI": 0}}"#,
    )
    .expect_err("bad");
    let fields: Vec<&str> = e.fields().iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, vec!["SubnetMin", "Backend.Type", "Backend.VNI"]);
    let text = e.to_string();
    assert!(
        text.starts_with("invalid network config: SubnetMin: 'nope' is not an IPv4 address; "),
        "{text}"
    );
}
