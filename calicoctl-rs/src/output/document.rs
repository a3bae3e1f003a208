//! YAML and JSON output. JSON keeps Calico's field order (`kind`, `apiVersion`,
//! `metadata`, `spec`), indented by two spaces, with a trailing newline (v3.25). YAML goes
//! through JSON with keys sorted alphabetically, as sigs.k8s.io/yaml does.

use datastore::model::API_VERSION;
use serde_json::{Map, Value};

use crate::error::CliError;

/// Recursively sorts object keys.
pub fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A `<Kind>List` object holding `items`, read at store revision `revision`.
pub fn list_object(kind: &str, items: Vec<Value>, revision: i64) -> Value {
    let mut meta = Map::new();
    meta.insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    let mut m = Map::new();
    m.insert("kind".into(), Value::String(format!("{kind}List")));
    m.insert("apiVersion".into(), Value::String(API_VERSION.into()));
    m.insert("metadata".into(), Value::Object(meta));
    m.insert("items".into(), Value::Array(items));
    Value::Object(m)
}

/// YAML text of `v` (keys sorted).
pub fn to_yaml(v: Value) -> Result<String, CliError> {
    serde_yaml_ng::to_string(&sorted(v))
        .map(|y| go_quoting(&y))
        .map_err(|e| CliError::new(format!("Failed to execute command: {e}")))
}

/// JSON text of `v`, two-space indent, trailing newline.
pub fn to_json(v: &Value) -> Result<String, CliError> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| CliError::new(format!("Failed to execute command: {e}")))
}

/// Go's yaml.v2 style for quoted scalars: double quotes (`resourceVersion: "5"`), and
/// timestamps quoted (`creationTimestamp: "2024-05-01T10:00:00Z"`).
fn go_quoting(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        let (head, value) = match line.find(": ") {
            Some(i) => line.split_at(i + 2),
            None => match line.trim_start().strip_prefix("- ") {
                Some(v) => line.split_at(line.len() - v.len()),
                None => (line, ""),
            },
        };
        let single_quoted = value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'');
        let requoted = if single_quoted && ambiguous(&value[1..value.len() - 1]) {
            let inner = value[1..value.len() - 1].replace("''", "'");
            Some(format!(
                "\"{}\"",
                inner.replace('\\', "\\\\").replace('"', "\\\"")
            ))
        } else if is_timestamp(value) {
            Some(format!("\"{value}\""))
        } else {
            None
        };
        match requoted {
            Some(v) => {
                out.push_str(head);
                out.push_str(&v);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Strings go-yaml double-quotes because plain they would read as another type
/// (numbers, booleans, null, timestamps, the empty string). Other strings that need
/// quoting keep libyaml's single quotes, as in Go.
fn ambiguous(inner: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ];
    inner.is_empty()
        || inner.parse::<f64>().is_ok()
        || WORDS.contains(&inner.to_ascii_lowercase().as_str())
        || is_timestamp(inner)
}

fn is_timestamp(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && v.ends_with('Z')
        && b[..4].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go_yaml() {
        let y = "metadata:\n  creationTimestamp: 2024-05-01T10:00:00Z\n  resourceVersion: '12'\n\
                 spec:\n  nodeSelector: all()\n  x:\n  - '!has(a)'\n  - 'true'\n";
        assert_eq!(
            go_quoting(y),
            "metadata:\n  creationTimestamp: \"2024-05-01T10:00:00Z\"\n  resourceVersion: \"12\"\n\
             spec:\n  nodeSelector: all()\n  x:\n  - '!has(a)'\n  - \"true\"\n"
        );
    }
}
