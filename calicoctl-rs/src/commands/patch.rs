//! `calicoctl patch <KIND> <NAME> -p '<merge patch>'`: RFC 7386 JSON merge patch applied
//! to the stored resource, validated, written by compare-and-swap.

use datastore::Client;
use datastore::client::{BatchOp, calico_text};
use datastore::model::AnyResource;
use serde_json::Value;

use crate::cli::PatchArgs;
use crate::error::{CliError, CliResult};

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Runs `patch`.
pub async fn run(client: &Client, args: PatchArgs) -> CliResult {
    let kind = super::resources::kind(&args.kind)?;
    let fail = |m: String| CliError::new(format!("Failed to patch '{kind}' resource: [{m}]"));
    if args.patch_type != "merge" {
        return Err(CliError::new(format!(
            "Failed to execute command: unsupported patch type '{}' (only merge)",
            args.patch_type
        )));
    }
    let patch: Value = serde_yaml_ng::from_str(&args.patch)
        .map_err(|e| CliError::new(format!("Failed to execute command: invalid patch: {e}")))?;
    let ns = args.namespace.as_deref().unwrap_or("default");
    let stored = super::resources::get(client, kind, ns, &args.name)
        .await
        .map_err(|e| fail(calico_text(&e)))?;
    let mut value = stored.to_value();
    merge_patch(&mut value, &patch);
    let patched = AnyResource::from_value(kind, value).map_err(|e| fail(e.to_string()))?;
    if patched.meta().name != args.name {
        return Err(fail(
            "the resource name cannot be changed by a patch".into(),
        ));
    }
    let mut docs = vec![patched];
    client
        .plan_batch(&mut docs, BatchOp::Replace)
        .await
        .map_err(|e| fail(e.message))?;
    for doc in &docs {
        client
            .write_any(doc, BatchOp::Replace)
            .await
            .map_err(|e| fail(calico_text(&e)))?;
    }
    println!("Successfully patched 1 '{kind}' resource");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"spec": {"bgp": {"asNumber": 1, "ipv4Address": "a"}, "x": 1}});
        merge_patch(
            &mut t,
            &json!({"spec": {"bgp": {"asNumber": 2}, "x": null}}),
        );
        assert_eq!(
            t,
            json!({"spec": {"bgp": {"asNumber": 2, "ipv4Address": "a"}}})
        );
    }
}
