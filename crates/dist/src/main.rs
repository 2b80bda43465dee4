//! `jumpgate-dist`: how Jumpgate is shipped to servers (docs/install.md).
//!
//! - `jumpgate-dist assets DIR` writes the shell completions (bash, zsh, fish) and the
//!   man pages (one per program and one per subcommand) of `jumpgate`, `jctl` and
//!   `jsh`, generated from their clap definitions ([`programs`]): what a package for
//!   any system needs.
//! - `jumpgate-dist deb` builds the Debian package from built binaries: those assets,
//!   the systemd unit and its hardening drop-in (`systemd/`), the maintainer scripts
//!   (`deb/`), with `dpkg-deb` ([`deb`]).
//!
//! A program of its own rather than a `completion` command in each binary: the
//! operators' binaries carry nothing for packaging, and CI needs no other toolchain
//! than cargo and Debian's dpkg (no cargo-deb to install).
#![forbid(unsafe_code)]

mod assets;
mod deb;
mod elf;
mod programs;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "jumpgate-dist",
    version,
    about = "Build what Jumpgate ships: shell completions, man pages and the Debian package"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the shell completions and man pages of jumpgate, jctl and jsh into DIR:
    /// DIR/completions/{bash,zsh,fish}/ and DIR/man/man1/ (uncompressed).
    Assets {
        /// The directory to write into (created if needed).
        dir: PathBuf,
    },
    /// Build the Debian package (jumpgate_VERSION_ARCH.deb) from built binaries.
    #[command(after_help = "Example:\n  \
        cargo build --release --locked -p jumpgate -p jsh\n  \
        cargo run --locked -p jumpgate-dist -- deb\n  \
        dpkg-deb --info target/debian/jumpgate_*.deb")]
    Deb(deb::DebArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("jumpgate-dist: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Assets { dir } => {
            let written = assets::write_all(&dir)?;
            println!("wrote {} files under {}", written.len(), dir.display());
            Ok(())
        }
        Command::Deb(args) => {
            let package = deb::build(&args)?;
            println!("{}", package.display());
            Ok(())
        }
    }
}
