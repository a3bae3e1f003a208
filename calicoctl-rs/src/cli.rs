//! calicoctl's command line, with calicoctl's verbs and flag spellings. Each verb's
//! arguments are a struct here; its behaviour lives in `commands/<verb>.rs`. New verb
//! groups (`node status`, `ipam ...`) are added as further [`Command`] variants.

use clap::{Args, Parser, Subcommand};

/// `calicoctl [options] <command> [<args>...]`
#[derive(Debug, Parser)]
#[command(name = "calicoctl", about = "The Calico command line tool (calico-rs)")]
#[command(disable_version_flag = true)]
pub struct Cli {
    /// Path to the file containing connection configuration in YAML or JSON format.
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<String>,
    /// Set the log level (one of panic, fatal, error, warn, info, debug).
    #[arg(short = 'l', long = "log-level", global = true)]
    pub log_level: Option<String>,
    /// Allow client and cluster versions mismatch (accepted for compatibility).
    #[arg(long = "allow-version-mismatch", global = true)]
    pub allow_version_mismatch: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Display one or many resources identified by file, stdin or resource type and name.
    Get(GetArgs),
    /// Apply a resource by file or stdin (create, or update if it exists).
    Apply(FileArgs),
    /// Create a resource by file or stdin.
    Create(CreateArgs),
    /// Replace a resource by file or stdin.
    Replace(FileArgs),
    /// Delete resources by file, stdin or resource type and name.
    Delete(DeleteArgs),
    /// Patch a pre-existing resource in place (JSON merge patch).
    Patch(PatchArgs),
    /// Display the version of this binary and of the cluster.
    Version(VersionArgs),
    /// Data store maintenance (`datastore migrate lock|unlock`).
    Datastore(crate::commands::migrate::DatastoreArgs),
    /// IP address management (show, check, release, configure).
    Ipam(crate::commands::ipam::IpamArgs),
    /// Calico node management (status of the local calico-node).
    Node(crate::commands::node::NodeArgs),
    /// Flannel backend: the subnet leases (`flannel subnets`).
    Flannel(crate::commands::flannel::FlannelArgs),
}

/// `get ( (<KIND> [<NAME>...]) | --filename=<FILENAME>) [--output=<OUTPUT>] ...`
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Resource kind (node, ippool, bgppeer, bgpconfig, felixconfig, ipamconfig, wep, ...).
    pub kind: Option<String>,
    /// Resource names; all resources of the kind when none are given.
    pub names: Vec<String>,
    /// Filename to use to get the resource. If set to "-" loads from stdin.
    #[arg(short = 'f', long = "filename")]
    pub filename: Option<String>,
    /// Output format: ps (default), wide, yaml, json, custom-columns=<cols>.
    #[arg(short = 'o', long = "output", default_value = "ps")]
    pub output: String,
    /// Namespace of namespaced resources (default "default").
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Strip cluster-specific metadata (uid, resourceVersion, creationTimestamp).
    #[arg(long = "export")]
    pub export: bool,
}

/// `-f <FILENAME>` input of apply/replace.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// Filename to use; "-" reads stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filename: String,
    /// Namespace for namespaced resources that do not name one.
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

/// `create -f <FILENAME> [--skip-exists]`
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Skip over and treat as successful any attempts to create an entry that exists.
    #[arg(long = "skip-exists")]
    pub skip_exists: bool,
}

/// `delete ( (<KIND> <NAME>...) | --filename=<FILE>) [--skip-not-exists]`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Resource kind.
    pub kind: Option<String>,
    /// Resource names.
    pub names: Vec<String>,
    /// Filename to use; "-" reads stdin.
    #[arg(short = 'f', long = "filename")]
    pub filename: Option<String>,
    /// Skip over and treat as successful any attempts to delete an entry that does not exist.
    #[arg(long = "skip-not-exists")]
    pub skip_not_exists: bool,
    /// Namespace of namespaced resources.
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

/// `patch <KIND> <NAME> --patch=<PATCH>`
#[derive(Debug, Args)]
pub struct PatchArgs {
    /// Resource kind.
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// JSON (or YAML) merge patch, e.g. '{"spec":{"ipipMode":"Always"}}'.
    #[arg(short = 'p', long = "patch")]
    pub patch: String,
    /// Patch type (only "merge" is supported).
    #[arg(short = 't', long = "type", default_value = "merge")]
    pub patch_type: String,
    /// Namespace of namespaced resources.
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

/// `version [--poll=<POLL>]`
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Accepted for compatibility; ignored.
    #[arg(long = "poll")]
    pub poll: Option<String>,
}
