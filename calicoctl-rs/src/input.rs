//! Reading and parsing `-f <file>` input (or stdin for `-`).

use std::io::Read;

use datastore::model::{AnyResource, parse_documents};

use crate::error::CliError;

/// Reads a file, or stdin for `-`, with Go's wording on failure.
pub fn read(filename: &str) -> Result<String, CliError> {
    let fail = |e: std::io::Error| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        CliError::new(format!("Failed to execute command: open {filename}: {why}"))
    };
    if filename == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(fail)?;
        return Ok(s);
    }
    std::fs::read_to_string(filename).map_err(fail)
}

/// Reads and parses every document of the input; `-n` fills in namespaces.
pub fn load(filename: &str, namespace: Option<&str>) -> Result<Vec<AnyResource>, CliError> {
    let text = read(filename)?;
    let mut docs = parse_documents(&text)
        .map_err(|e| CliError::new(format!("Failed to execute command: {e}")))?;
    if let Some(ns) = namespace {
        for d in docs.iter_mut().filter(|d| d.kind().namespaced()) {
            if d.meta().namespace.as_deref().unwrap_or("").is_empty() {
                d.meta_mut().namespace = Some(ns.to_string());
            }
        }
    }
    Ok(docs)
}
