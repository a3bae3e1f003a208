//! How calicoctl prints resources: Calico's tables (`ps`, `wide`, `custom-columns`) and
//! YAML/JSON documents and List objects.

pub mod columns;
pub mod document;
pub mod table;

use crate::error::CliError;

/// An `-o` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    Ps,
    Wide,
    Yaml,
    Json,
    CustomColumns(Vec<String>),
}

impl OutputFormat {
    /// Parses `-o`: `ps` (default), `wide`, `yaml`, `json`, `custom-columns=A,B`.
    pub fn parse(s: &str) -> Result<OutputFormat, CliError> {
        Ok(match s {
            "" | "ps" => OutputFormat::Ps,
            "wide" => OutputFormat::Wide,
            "yaml" => OutputFormat::Yaml,
            "json" => OutputFormat::Json,
            _ => match s.strip_prefix("custom-columns=") {
                Some("") => return Err(CliError::new("need to specify at least one column")),
                Some(cols) => OutputFormat::CustomColumns(
                    cols.split(',')
                        .map(|c| c.trim().to_ascii_uppercase())
                        .collect(),
                ),
                None if s == "custom-columns" => {
                    return Err(CliError::new("need to specify at least one column"));
                }
                None => return Err(CliError::new(format!("unrecognized output format '{s}'"))),
            },
        })
    }
}
