//! Fuzzes the selector parser (users write selectors; calico-node, calico-ipam and
//! calicoctl parse them): no input may panic or overflow the stack, a parsed selector
//! evaluates against any labels, and its own text parses again to the same tree.
#![no_main]

use std::collections::BTreeMap;

use datastore::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sel) = Selector::parse(text) else {
        return;
    };
    let labels = BTreeMap::from([
        ("a".to_string(), "1".to_string()),
        ("rack".to_string(), "r1".to_string()),
        ("kubernetes.io/hostname".to_string(), "node-1".to_string()),
    ]);
    let _ = sel.matches(&labels);
    let _ = sel.matches(&BTreeMap::new());
    let again = Selector::parse(&sel.to_string()).expect("a selector's own text parses");
    assert_eq!(again.expr(), sel.expr(), "{text:?}");
});
