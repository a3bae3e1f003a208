//! calicoctl's command line, with calicoctl's verbs and flag spellings. Each verb's
//! arguments (and each verb group's sub-commands) are a struct here; its behaviour lives
//! in `commands/<verb>.rs`, which imports them from here (never the other way round). New verb
//! groups (`node status`, `ipam ...`) are added as further [`Command`] variants.

use std::path::PathBuf;

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
    Datastore(DatastoreArgs),
    /// IP address management (show, check, release, configure).
    Ipam(IpamArgs),
    /// Calico node management (status of the local calico-node).
    Node(NodeArgs),
    /// Flannel backend: the subnet leases (`flannel subnets`).
    Flannel(FlannelArgs),
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

// ===== datastore migrate =====

/// `calicoctl datastore <command>`
#[derive(Debug, Args)]
pub struct DatastoreArgs {
    #[command(subcommand)]
    pub command: DatastoreCommand,
}

/// The `datastore` sub-commands.
#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Data store migration steps (lock, unlock).
    Migrate(MigrateArgs),
}

/// `calicoctl datastore migrate <lock|unlock>`
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub step: MigrateStep,
}

/// What `migrate` does.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateStep {
    /// Lock the data store (datastoreReady false).
    Lock,
    /// Unlock the data store (datastoreReady true).
    Unlock,
}

// ===== ipam =====

/// `calicoctl ipam <command>`
#[derive(Debug, Args)]
pub struct IpamArgs {
    #[command(subcommand)]
    pub command: IpamCommand,
}

/// The `ipam` sub-commands.
#[derive(Debug, Subcommand)]
pub enum IpamCommand {
    /// Show details of Calico IP address usage.
    Show(ShowArgs),
    /// Check the integrity of the IPAM datastructures.
    Check(CheckArgs),
    /// Release a Calico assigned IP address.
    Release(ReleaseArgs),
    /// Configure IPAM.
    Configure(ConfigureArgs),
}

/// `show [--ip=<IP> | --show-blocks] [--show-borrowed] [--show-configuration]`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Report whether this specific IP address is in use.
    #[arg(long = "ip", conflicts_with = "show_blocks")]
    pub ip: Option<String>,
    /// Show detailed information for IP blocks as well as pools.
    #[arg(long = "show-blocks")]
    pub show_blocks: bool,
    /// Show detailed information for "borrowed" IP addresses.
    #[arg(long = "show-borrowed")]
    pub show_borrowed: bool,
    /// Show current Calico IPAM configuration.
    #[arg(long = "show-configuration")]
    pub show_configuration: bool,
}

/// `check [--output=<report.json>] [--show-all-ips] [--show-problem-ips]`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Path to output report file (Calico's JSON, for `release --from-report`).
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
    /// Accepted for compatibility.
    #[arg(long = "show-all-ips")]
    pub show_all_ips: bool,
    /// Accepted for compatibility (problem IPs are always listed).
    #[arg(long = "show-problem-ips")]
    pub show_problem_ips: bool,
}

/// `release [--ip=<IP>] [--from-report=<REPORT>]... [--force]`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["ip", "from_report"])))]
pub struct ReleaseArgs {
    /// IP address to release.
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// Release the leaked addresses of the report (`ipam check -o`). With several
    /// reports, only addresses leaked in all of them are released.
    #[arg(long = "from-report")]
    pub from_report: Vec<String>,
    /// Release although the data store is not locked or the report came from another
    /// calicoctl version.
    #[arg(long = "force")]
    pub force: bool,
}

/// `configure --strictaffinity=<true/false>`
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// Set StrictAffinity to true/false.
    #[arg(long = "strictaffinity", required = true)]
    pub strict_affinity: String,
}

// ===== node =====

/// `calicoctl node <command>`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

/// The node verbs.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Show the status of the Calico node on this host (BGP sessions, dataplane).
    Status(StatusArgs),
}

/// `calicoctl node status [--run-dir <dir>]`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Where the local calico-node keeps its status socket.
    #[arg(
        long = "run-dir",
        env = "CALICO_RUN_DIR",
        default_value = "/var/run/calico"
    )]
    pub run_dir: PathBuf,
    /// `json` or `yaml` for every session's settings and counts; the table otherwise.
    #[arg(short = 'o', long = "output", value_parser = ["json", "yaml"])]
    pub output: Option<String>,
}

// ===== flannel =====

/// flannel's default etcd prefix.
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";

/// `calicoctl flannel <command>`
#[derive(Debug, Args)]
pub struct FlannelArgs {
    #[command(subcommand)]
    pub command: FlannelCommand,
}

/// The `flannel` sub-commands.
#[derive(Debug, Subcommand)]
pub enum FlannelCommand {
    /// List the subnet leases (flannel backend).
    Subnets(SubnetsArgs),
}

/// `subnets [--etcd-prefix=<prefix>] [--output=<ps|wide|json>]`
#[derive(Debug, Args)]
pub struct SubnetsArgs {
    /// The flannel etcd prefix (calico-node's FLANNELD_ETCD_PREFIX).
    #[arg(long = "etcd-prefix", env = "FLANNELD_ETCD_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Output format: ps (default), wide or json.
    #[arg(short = 'o', long = "output", default_value = "ps")]
    pub output: String,
}
