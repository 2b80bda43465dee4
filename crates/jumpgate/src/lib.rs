//! The Jumpgate binaries' shared code: argument parsing, config loading, logging and
//! the daemon's lifecycle. The services themselves live in their own crates (see
//! DESIGN.md); this crate wires them together.
#![forbid(unsafe_code)]

pub mod cli;
pub mod jctl_cli;

mod backup;
mod config_file;
mod daemon;
mod datadir;
mod diag;
mod jctl;
mod logging;
mod migrate;
mod storage;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{BackupCommand, Cli, Command, ConfigCommand, StartArgs, StorageCommand};
use jumpgate_types::Config;
use jumpgate_types::config::HostPort;
use std::path::PathBuf;
use std::process::ExitCode;

/// The `jumpgate` program.
pub fn jumpgate_main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "jumpgate: error: {}",
                jumpgate_api::client::error_chain(err.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

/// The `jctl` program.
pub fn jctl_main() -> ExitCode {
    let cli = jctl_cli::JctlCli::parse();
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(jctl::run(cli)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "jctl: error: {}",
                jumpgate_api::client::error_chain(err.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Start(args) => start(args),
        Command::Configure => {
            print!("{}", jumpgate_types::sample_config());
            Ok(())
        }
        Command::Config(ConfigCommand::Check { config }) => {
            let parsed = config_file::load(&config)?;
            let enabled: Vec<&str> = [
                ("auth_service", parsed.auth_service.enabled),
                ("proxy_service", parsed.proxy_service.enabled),
                ("ssh_service", parsed.ssh_service.enabled),
            ]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
            let services = if enabled.is_empty() {
                "none".to_string()
            } else {
                enabled.join(", ")
            };
            println!("{}: OK (services: {services})", config.display());
            Ok(())
        }
        Command::Backup(BackupCommand::Create { file, location }) => {
            backup::create(&file, &location)
        }
        Command::Backup(BackupCommand::Restore { file, location }) => {
            backup::restore(&file, &location)
        }
        Command::Storage(StorageCommand::Migrate {
            from,
            to,
            force,
            audit,
            recordings,
        }) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|runtime| {
                runtime.block_on(migrate::run(&migrate::Migration {
                    from,
                    to,
                    force,
                    audit,
                    recordings,
                }))
            }),
        Command::Version => {
            println!("jumpgate {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

/// A proxy holds a socket per agent tunnel and per user connection, far more than the
/// usual soft limit of 1024 open files: raise it to the hard limit, as Go programs such
/// as Teleport do at start.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < 4096 => tracing::warn!(
            limit,
            "few open files allowed (each tunnel and connection is one); raise the hard limit \
             (LimitNOFILE= in the systemd unit, or ulimit -Hn)"
        ),
        Ok(limit) => tracing::info!(limit, "open files allowed"),
        Err(err) => tracing::warn!(%err, "cannot raise the open files limit"),
    }
}

fn start(args: StartArgs) -> Result<()> {
    let mut config = if args.dev {
        Config::dev(
            args.data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(cli::DEFAULT_DEV_DATA_DIR)),
        )
    } else {
        let path = args
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(cli::DEFAULT_CONFIG_PATH));
        config_file::load(&path).map_err(|err| {
            if args.config.is_none() {
                err.context("no -c given; or try `jumpgate start --dev` for a local cluster")
            } else {
                err
            }
        })?
    };
    if let Some(dir) = args.data_dir {
        config.jumpgate.data_dir = dir;
    }
    if let Some(addr) = &args.diag_addr {
        let parsed: HostPort = addr
            .parse()
            .map_err(|reason| anyhow::anyhow!("--diag-addr: {reason}"))?;
        config.jumpgate.diag_addr = Some(parsed);
    }
    if let Some(addr) = &args.auth_addr {
        config.auth_service.listen_addr = addr
            .parse()
            .map_err(|reason| anyhow::anyhow!("--auth-addr: {reason}"))?;
    }
    if let Some(addr) = &args.proxy_addr {
        config.proxy_service.web_listen_addr = addr
            .parse()
            .map_err(|reason| anyhow::anyhow!("--proxy-addr: {reason}"))?;
    }
    logging::init(&config.jumpgate.log, args.debug)?;
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon::run(config, args.dev))
}
