//! The Debian package, assembled in a staging tree and built with `dpkg-deb` (on every
//! Debian system; no cargo-deb or debhelper needed). What goes where is
//! [`layout`]; docs/install.md explains it to operators.
//!
//! Nothing is written under /etc: /etc/jumpgate.yaml is the operator's, so the package
//! never creates, replaces or removes it (a sample is in the docs directory, and
//! `jumpgate configure` prints it).

use crate::assets::{self, Kind};
use crate::elf;
use anyhow::{Context, Result, bail};
use clap_complete::Shell;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package's name, and the name of its unit and user.
const PACKAGE: &str = "jumpgate";
/// The binaries it ships, from the build's output directory.
const BINARIES: [&str; 3] = ["jumpgate", "jctl", "jsh"];

const UNIT: &str = include_str!("../systemd/jumpgate.service");
const HARDENING: &str = include_str!("../systemd/hardening.conf");
const POSTINST: &str = include_str!("../deb/postinst");
const PRERM: &str = include_str!("../deb/prerm");
const POSTRM: &str = include_str!("../deb/postrm");
const COPYRIGHT: &str = include_str!("../deb/copyright");
const INSTALL_DOC: &str = include_str!("../../../docs/install.md");

const MAINTAINER: &str = "Jumpgate maintainers <maintainers@example.invalid>";
/// Beyond the shared libraries read from the binaries: useradd and groupadd
/// (postinst). setpriv, which a node starts sessions with, is in util-linux, which
/// every Debian system has.
const DEPENDS: &[&str] = &["passwd"];
/// OpenSSH's sftp-server, which a node runs for `jsh scp`, sftp and scp.
const RECOMMENDS: &[&str] = &["openssh-sftp-server"];
/// What loads the bash completions on demand.
const SUGGESTS: &[&str] = &["bash-completion"];

#[derive(Debug, clap::Args)]
pub struct DebArgs {
    /// Where the built jumpgate, jctl and jsh are [default: target/release].
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Where to write the package [default: target/debian].
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// The package version [default: the workspace's, with `-` written `~` so that a
    /// pre-release sorts before its release].
    #[arg(long, value_name = "VERSION")]
    pub deb_version: Option<String>,
    /// The Debian architecture [default: read from the binaries' ELF headers].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// How dpkg-deb compresses the contents: xz is the smallest; none is the fastest
    /// (the tests package debug binaries with it).
    #[arg(long, value_enum, default_value_t = Compression::Xz)]
    pub compression: Compression,
    /// Ship the binaries as built, with their symbols and debug information. By
    /// default they are stripped as Debian strips packaged programs (binutils' strip;
    /// panic messages keep their file and line).
    #[arg(long)]
    pub no_strip: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Xz,
    Zstd,
    Gzip,
    None,
}

impl Compression {
    fn dpkg_name(self) -> &'static str {
        match self {
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }
}

/// Builds the package; returns its path.
pub fn build(args: &DebArgs) -> Result<PathBuf> {
    let target = target_dir();
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(|| target.join("release"));
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| target.join("debian"));
    let version = match &args.deb_version {
        Some(version) => check_version(version)?,
        None => env!("CARGO_PKG_VERSION").replace('-', "~"),
    };

    let mut binaries = Vec::new();
    for name in BINARIES {
        let path = bin_dir.join(name);
        if !path.is_file() {
            bail!(
                "{} is missing: build the binaries first (cargo build --release --locked -p jumpgate -p jsh), or give --bin-dir",
                path.display()
            );
        }
        binaries.push((name, path));
    }
    let (arch, depends) = runtime_needs(&binaries, args.arch.as_deref())?;

    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    // Removed when done, also on an error.
    let staging = tempfile::Builder::new()
        .prefix(".jumpgate-deb-")
        .tempdir_in(&out_dir)
        .with_context(|| format!("cannot make a staging directory in {}", out_dir.display()))?;
    let root = staging.path();
    let files = layout(&binaries, !args.no_strip)?;
    for file in &files {
        file.write_under(root)?;
    }
    compress_man_pages(root)?;

    let installed_kib = installed_size_kib(root)?;
    let control = control_file(&version, &arch, &depends, installed_kib);
    let md5sums = md5sums(root)?;
    let debian = root.join("DEBIAN");
    for (name, contents, mode) in [
        ("control", control.as_str(), 0o644),
        ("md5sums", md5sums.as_str(), 0o644),
        ("postinst", POSTINST, 0o755),
        ("prerm", PRERM, 0o755),
        ("postrm", POSTRM, 0o755),
    ] {
        write_file(&debian.join(name), contents.as_bytes(), mode)?;
    }
    set_dir_modes(root)?;

    let package = out_dir.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    let output = Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg(format!("-Z{}", args.compression.dpkg_name()))
        .arg("--build")
        .arg(root)
        .arg(&package)
        .output()
        .context("cannot run dpkg-deb (Debian's package builder, in package dpkg)")?;
    if !output.status.success() {
        bail!(
            "dpkg-deb failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(package)
}

/// Where cargo puts its output: `CARGO_TARGET_DIR`, else the workspace's `target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        )
}

/// A Debian version: digits first, then what dpkg allows.
fn check_version(version: &str) -> Result<String> {
    let starts_with_digit = version.chars().next().is_some_and(|c| c.is_ascii_digit());
    let allowed = version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c));
    if !starts_with_digit || !allowed {
        bail!(
            "--deb-version {version:?}: a Debian version starts with a digit and holds only letters, digits and . + ~ - :"
        );
    }
    Ok(version.to_string())
}

/// The architecture (given, or the binaries' own, which must agree) and the Depends
/// field's shared-library packages, each at the highest version any binary needs.
fn runtime_needs(
    binaries: &[(&str, PathBuf)],
    given_arch: Option<&str>,
) -> Result<(String, Vec<String>)> {
    let mut arch: Option<String> = given_arch.map(str::to_string);
    let mut packages: Vec<(&'static str, Option<String>)> = Vec::new();
    for (_, path) in binaries {
        let needs = elf::needs(path)?;
        if given_arch.is_none() {
            let Some(found) = needs.arch else {
                bail!(
                    "{}: ELF machine {} has no Debian architecture this tool knows; give --arch",
                    path.display(),
                    needs.machine
                );
            };
            match &arch {
                Some(known) if known != found => bail!(
                    "the binaries are for different architectures ({known} and {found} for {})",
                    path.display()
                ),
                _ => arch = Some(found.to_string()),
            }
        }
        for (package, version) in needs.packages {
            elf::add_need(&mut packages, package, version);
        }
    }
    let arch = arch.context("no binaries to read the architecture from")?;
    packages.sort_by_key(|(package, _)| *package);
    let mut depends: Vec<String> = packages
        .into_iter()
        .map(|(package, version)| match version {
            Some(version) => format!("{package} (>= {version})"),
            None => package.to_string(),
        })
        .collect();
    depends.extend(DEPENDS.iter().map(|package| package.to_string()));
    Ok((arch, depends))
}

/// Where a file comes from.
#[derive(Debug)]
enum Source {
    Bytes(Vec<u8>),
    Copy(PathBuf),
    /// A binary written stripped of its symbols and debug information.
    Strip(PathBuf),
}

/// One file of the package: its path under the root, its contents and its mode.
#[derive(Debug)]
struct PackageFile {
    path: String,
    source: Source,
    mode: u32,
}

impl PackageFile {
    fn text(path: impl Into<String>, text: &str) -> PackageFile {
        PackageFile {
            path: path.into(),
            source: Source::Bytes(text.as_bytes().to_vec()),
            mode: 0o644,
        }
    }

    fn write_under(&self, root: &Path) -> Result<()> {
        let path = root.join(&self.path);
        match &self.source {
            Source::Bytes(bytes) => write_file(&path, bytes, self.mode),
            Source::Copy(from) => {
                create_parent(&path)?;
                std::fs::copy(from, &path).with_context(|| {
                    format!("cannot copy {} to {}", from.display(), path.display())
                })?;
                set_mode(&path, self.mode)
            }
            Source::Strip(from) => {
                create_parent(&path)?;
                // What dh_strip does to a program.
                let output = Command::new("strip")
                    .args([
                        "--remove-section=.comment",
                        "--remove-section=.note",
                        "--strip-unneeded",
                        "-o",
                    ])
                    .arg(&path)
                    .arg(from)
                    .output()
                    .context("cannot run strip (binutils); or give --no-strip")?;
                if !output.status.success() {
                    bail!(
                        "strip {} failed ({}): {}; a binary for another architecture needs that architecture's strip, or --no-strip",
                        from.display(),
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
                }
                set_mode(&path, self.mode)
            }
        }
    }
}

/// Every file the package installs (paths relative to /). Man pages are listed
/// uncompressed; they are gzipped in the staging tree.
fn layout(binaries: &[(&str, PathBuf)], strip: bool) -> Result<Vec<PackageFile>> {
    let mut files: Vec<PackageFile> = binaries
        .iter()
        .map(|(name, path)| PackageFile {
            path: format!("usr/bin/{name}"),
            source: if strip {
                Source::Strip(path.clone())
            } else {
                Source::Copy(path.clone())
            },
            mode: 0o755,
        })
        .collect();
    files.push(PackageFile::text(
        "lib/systemd/system/jumpgate.service",
        UNIT,
    ));
    files.push(PackageFile::text(
        "usr/share/jumpgate/hardening.conf",
        HARDENING,
    ));
    let doc = "usr/share/doc/jumpgate";
    files.push(PackageFile::text(format!("{doc}/copyright"), COPYRIGHT));
    files.push(PackageFile::text(format!("{doc}/install.md"), INSTALL_DOC));
    files.push(PackageFile::text(
        format!("{doc}/examples/jumpgate.yaml"),
        jumpgate_types::sample_config(),
    ));
    for asset in assets::generate()? {
        let dir = match asset.kind {
            Kind::Completion(Shell::Bash) => "usr/share/bash-completion/completions",
            // Debian's zsh searches here; fish's vendor directory.
            Kind::Completion(Shell::Zsh) => "usr/share/zsh/vendor-completions",
            Kind::Completion(Shell::Fish) => "usr/share/fish/vendor_completions.d",
            Kind::Completion(other) => bail!("no completion directory for {other}"),
            Kind::Man => "usr/share/man/man1",
        };
        files.push(PackageFile {
            path: format!("{dir}/{}", asset.file_name),
            source: Source::Bytes(asset.contents),
            mode: 0o644,
        });
    }
    Ok(files)
}

/// Debian compresses man pages (`gzip -9n`: no name or time stamp, so a rebuild
/// gives the same bytes).
fn compress_man_pages(root: &Path) -> Result<()> {
    let dir = root.join("usr/share/man/man1");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    pages.sort();
    let status = Command::new("gzip")
        .arg("-9n")
        .args(&pages)
        .status()
        .context("cannot run gzip")?;
    if !status.success() {
        bail!("gzip of the man pages failed ({status})");
    }
    Ok(())
}

/// Every regular file under `root` but DEBIAN/, as paths relative to it, sorted.
fn package_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            if relative.starts_with("DEBIAN") {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(relative);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Installed-Size: KiB on disk, each file rounded up (as dpkg-gencontrol counts).
fn installed_size_kib(root: &Path) -> Result<u64> {
    let mut total = 0;
    for file in package_files(root)? {
        let len = std::fs::metadata(root.join(&file))
            .with_context(|| format!("cannot stat {}", file.display()))?
            .len();
        total += len.div_ceil(1024);
    }
    Ok(total)
}

/// DEBIAN/md5sums, which `dpkg --verify` and debsums check installed files against.
fn md5sums(root: &Path) -> Result<String> {
    let files = package_files(root)?;
    let output = Command::new("md5sum")
        .current_dir(root)
        .arg("--")
        .args(&files)
        .output()
        .context("cannot run md5sum")?;
    if !output.status.success() {
        bail!(
            "md5sum failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("md5sum printed a path that is not UTF-8")
}

fn control_file(version: &str, arch: &str, depends: &[String], installed_kib: u64) -> String {
    format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}\n\
         Recommends: {recommends}\n\
         Suggests: {suggests}\n\
         Section: admin\n\
         Priority: optional\n\
         Homepage: {homepage}\n\
         Description: access plane for infrastructure: certificate authority and proxy\n \
         Jumpgate gives people and machines access to SSH servers through one public\n \
         endpoint, with short-lived certificates instead of static keys, role-based\n \
         access control, an audit log and recordings of every interactive session.\n \
         .\n \
         This package holds the daemon (jumpgate: the auth, proxy and SSH services),\n \
         the admin tool (jctl), the user tool (jsh), a systemd unit, shell\n \
         completions and man pages.\n",
        depends = depends.join(", "),
        recommends = RECOMMENDS.join(", "),
        suggests = SUGGESTS.join(", "),
        homepage = env!("CARGO_PKG_REPOSITORY"),
    )
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    create_parent(path)?;
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// 0755 for every directory, whatever the builder's umask.
fn set_dir_modes(root: &Path) -> Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        set_mode(&dir, 0o755)?;
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked() {
        assert!(check_version("0.2.0~rc.1").is_ok());
        assert!(check_version("1:0.2.0-1").is_ok());
        assert!(check_version("v0.2").is_err());
        assert!(check_version("0.2 beta").is_err());
        assert!(check_version("").is_err());
    }

    #[test]
    fn the_control_file_has_every_field_dpkg_wants() {
        let control = control_file(
            "0.1.0",
            "amd64",
            &["libc6 (>= 2.34)".to_string(), "passwd".to_string()],
            1234,
        );
        for field in [
            "Package: jumpgate\n",
            "Version: 0.1.0\n",
            "Architecture: amd64\n",
            "Maintainer: ",
            "Installed-Size: 1234\n",
            "Depends: libc6 (>= 2.34), passwd\n",
            "Description: ",
        ] {
            assert!(control.contains(field), "{field} missing:\n{control}");
        }
        // Every continuation line of the description starts with a space.
        let description = control.split("Description: ").nth(1).unwrap();
        for line in description.lines().skip(1) {
            assert!(line.starts_with(' '), "{line:?}");
        }
    }
}
