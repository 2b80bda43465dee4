//! Command-line interface of the `jumpgate` daemon.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// The default config file when `-c` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/jumpgate.yaml";
/// The data directory of `--dev` and of the backup commands when nothing else is given.
pub const DEFAULT_DEV_DATA_DIR: &str = "./jumpgate-data";

#[derive(Debug, Parser)]
#[command(
    name = "jumpgate",
    version,
    about = "Jumpgate: a certificate authority and access proxy for your infrastructure",
    long_about = "Jumpgate: a certificate authority and access proxy for your infrastructure.\n\n\
        `jumpgate start -c /etc/jumpgate.yaml` runs the services the config enables \
        (auth, proxy, ssh). `jumpgate start --dev` runs a single-machine cluster on \
        localhost with embedded storage, for trying Jumpgate out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the services the config enables.
    Start(StartArgs),
    /// Print a commented sample config (a starting point for /etc/jumpgate.yaml).
    Configure,
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Back up and restore the embedded (SQLite) cluster state.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Move the cluster state (and audit events and recordings) between stores.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Config file [default: /etc/jumpgate.yaml].
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        conflicts_with = "dev"
    )]
    pub config: Option<PathBuf>,
    /// Run auth, proxy and ssh on localhost with the embedded defaults (no config file).
    #[arg(long)]
    pub dev: bool,
    /// Data directory; overrides `jumpgate.data_dir` [default for --dev: ./jumpgate-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Diagnostics listener (/healthz, /readyz, /metrics) as host:port; overrides
    /// `jumpgate.diag_addr`.
    #[arg(long, value_name = "HOST:PORT")]
    pub diag_addr: Option<String>,
    /// Where the auth API listens, as host:port (port 0: any free port, which `jctl`
    /// finds in the data directory); overrides `auth_service.listen_addr`.
    #[arg(long, value_name = "HOST:PORT")]
    pub auth_addr: Option<String>,
    /// Where the proxy's public port listens, as host:port (port 0: any free port, written
    /// to DATA_DIR/proxy_addr); overrides `proxy_service.web_listen_addr`.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy_addr: Option<String>,
    /// Log at debug level, whatever the config says.
    #[arg(short = 'd', long)]
    pub debug: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file: exit 0 if it is valid; otherwise print the file, the field
    /// and the reason, and exit 1.
    Check {
        /// The file to check; `-` reads standard input.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write a consistent snapshot of the cluster state to FILE, safely while the
    /// daemon runs.
    Create {
        /// Where to write the snapshot (mode 0600: it holds the CA private keys).
        file: PathBuf,
        #[command(flatten)]
        location: StateLocation,
    },
    /// Replace the cluster state with the snapshot in FILE. The daemon must be stopped;
    /// the current state is kept beside it as `sqlite.db.before-restore-<time>`.
    Restore {
        /// The snapshot made by `jumpgate backup create`.
        file: PathBuf,
        #[command(flatten)]
        location: StateLocation,
    },
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Copy the cluster state from the store one config names to the store another names,
    /// e.g. from SQLite to PostgreSQL or etcd, then compare the two (item counts and a
    /// SHA-256 of every key, value and expiry). Stop every auth server first: writes made
    /// during the copy would be lost. A target that already holds state is refused unless
    /// --force, which empties it first.
    #[command(
        after_help = "Example (seed 000's SQLite pair moving to PostgreSQL):\n  \
            systemctl stop jumpgate\n  \
            jumpgate storage migrate --from /etc/jumpgate.yaml --to /etc/jumpgate-postgres.yaml --audit --recordings\n  \
            mv /etc/jumpgate-postgres.yaml /etc/jumpgate.yaml && systemctl start jumpgate"
    )]
    Migrate {
        /// The config whose `jumpgate.storage` holds the state now.
        #[arg(long, value_name = "CONFIG")]
        from: PathBuf,
        /// The config whose `jumpgate.storage` the state moves to.
        #[arg(long, value_name = "CONFIG")]
        to: PathBuf,
        /// Empty a target that already holds cluster state, then copy.
        #[arg(long)]
        force: bool,
        /// Also copy the audit events, from the first store of the source's
        /// `audit_events_uri` (or its SQLite log) to every store of the target's.
        #[arg(long)]
        audit: bool,
        /// Also copy the session recordings, from the source's `audit_sessions_uri` (or
        /// `DATA_DIR/log/sessions`) to the target's; a recording already there in full is
        /// skipped, a partial one is completed, and every copy is compared by SHA-256.
        #[arg(long)]
        recordings: bool,
    },
}

/// Where the state to back up or restore lives.
#[derive(Debug, Args)]
pub struct StateLocation {
    /// The daemon's data directory [default: ./jumpgate-data, or `data_dir` from -c].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Take the data directory and storage settings from this config file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}
