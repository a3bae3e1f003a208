//! `calicoctl get <KIND> [<NAME>...] [-o ps|wide|yaml|json|custom-columns=..] [--export]`.

use datastore::Client;
use datastore::client::calico_text;
use datastore::model::{AnyResource, BGPConfiguration, DEFAULT_AS_NUMBER, Kind};
use serde_json::Value;

use crate::cli::GetArgs;
use crate::error::{CliError, CliResult};
use crate::output::columns::{CellContext, cell, headings};
use crate::output::{OutputFormat, document, table};

/// `config "asnumber"`: the cluster AS, `64512` when unset, `unknown` on error.
async fn cluster_asn(client: &Client) -> String {
    match client.try_get::<BGPConfiguration>("default").await {
        Ok(Some(c)) => c.spec.as_number.unwrap_or(DEFAULT_AS_NUMBER).to_string(),
        Ok(None) => DEFAULT_AS_NUMBER.to_string(),
        Err(_) => "unknown".to_string(),
    }
}

/// Runs `get`.
pub async fn run(client: &Client, args: GetArgs) -> CliResult {
    let format = OutputFormat::parse(&args.output)?;
    let ns = args.namespace.clone().unwrap_or_else(|| "default".into());
    let (kind, mut items, revision, named) = match (&args.filename, &args.kind) {
        (Some(f), _) => {
            let docs = crate::input::load(f, args.namespace.as_deref())?;
            let kind = docs
                .first()
                .map(|d| d.kind())
                .ok_or_else(|| CliError::new("No resources specified"))?;
            let mut items = Vec::new();
            for d in &docs {
                let dns = d.meta().namespace.clone().unwrap_or_else(|| ns.clone());
                let r = super::resources::get(client, d.kind(), &dns, &d.meta().name)
                    .await
                    .map_err(|e| CliError::new(calico_text(&e)))?;
                items.push(r);
            }
            (kind, items, 0, true)
        }
        (None, Some(k)) => {
            let kind = super::resources::kind(k)?;
            if args.names.is_empty() {
                let scope = (!args.all_namespaces).then_some(ns.as_str());
                let (items, rev) = super::resources::list(client, kind, scope).await?;
                (kind, items, rev, false)
            } else {
                let mut items = Vec::new();
                for name in &args.names {
                    let r = super::resources::get(client, kind, &ns, name)
                        .await
                        .map_err(|e| CliError::new(calico_text(&e)))?;
                    items.push(r);
                }
                (kind, items, 0, true)
            }
        }
        (None, None) => {
            return Err(CliError::new(
                "Invalid option: 'calicoctl get'. Use flag '--help' to read about a specific \
                 subcommand.",
            ));
        }
    };
    if args.export {
        for r in &mut items {
            r.meta_mut().clear_for_export();
        }
    }
    let text = match format {
        OutputFormat::Yaml | OutputFormat::Json => {
            let values: Vec<Value> = items.iter().map(AnyResource::to_value).collect();
            let value = if !named {
                document::list_object(kind.name(), values, revision)
            } else if values.len() == 1 {
                values.into_iter().next().unwrap_or(Value::Null)
            } else {
                Value::Array(values)
            };
            if format == OutputFormat::Yaml {
                document::to_yaml(value)?
            } else {
                document::to_json(&value)?
            }
        }
        OutputFormat::Ps | OutputFormat::Wide | OutputFormat::CustomColumns(_) => {
            render_table(client, kind, &items, &format, args.all_namespaces).await?
        }
    };
    print!("{text}");
    Ok(())
}

async fn render_table(
    client: &Client,
    kind: Kind,
    items: &[AnyResource],
    format: &OutputFormat,
    all_namespaces: bool,
) -> CliResult<String> {
    let (ps, wide) = headings(kind);
    let mut cols: Vec<&str> = match format {
        OutputFormat::Wide => wide.to_vec(),
        OutputFormat::CustomColumns(wanted) => {
            let mut valid: Vec<&str> = wide.to_vec();
            valid.extend(ps.iter().filter(|h| !wide.contains(h)));
            let mut cols = Vec::new();
            for w in wanted {
                match valid.iter().find(|v| **v == w.as_str()) {
                    Some(v) => cols.push(*v),
                    None => {
                        return Err(CliError::new(format!(
                            "unknown heading {w}, valid values are: {}",
                            valid.join(", ")
                        )));
                    }
                }
            }
            cols
        }
        _ => ps.to_vec(),
    };
    if kind.namespaced() && all_namespaces {
        cols.insert(0, "NAMESPACE");
    }
    let ctx = CellContext {
        cluster_asn: if kind == Kind::Node && cols.contains(&"ASN") {
            cluster_asn(client).await
        } else {
            String::new()
        },
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| cols.iter().map(|h| cell(r, h, &ctx)).collect())
        .collect();
    Ok(table::render(&cols, &rows))
}
