//! Identity files in the data directory: the admin identity `jctl` uses on the auth
//! host (`DATA_DIR/admin/`), written by the auth service at every start.
//!
//! Layout: `cert.pem` (the X.509 identity), `key.pem` (its private key, 0600),
//! `ca.pem` (the cluster's TLS CA certificates to trust) and `auth_addr` (where this
//! host's auth API listens, as `host:port`).

use anyhow::{Context, Result, bail};
use jumpgate_api::TlsCredentials;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The admin identity's directory inside a data directory.
pub fn admin_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("admin")
}

/// An identity's files, read back.
#[derive(Debug)]
pub struct IdentityFiles {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub auth_addr: Option<String>,
}

impl IdentityFiles {
    pub fn credentials(&self) -> Result<TlsCredentials> {
        Ok(TlsCredentials::from_pem(
            &self.cert_pem,
            &self.key_pem,
            &self.ca_pem,
        )?)
    }
}

/// Writes a file readable only by its owner, replacing it atomically (a `jctl` reading
/// concurrently sees the old or the new file, never half of one).
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes an identity into `dir` (created 0700).
pub fn write(dir: &Path, files: &IdentityFiles) -> Result<()> {
    crate::datadir::create_private_dir(dir)?;
    write_private(&dir.join("key.pem"), &files.key_pem)?;
    write_private(&dir.join("cert.pem"), &files.cert_pem)?;
    write_private(&dir.join("ca.pem"), &files.ca_pem)?;
    if let Some(addr) = &files.auth_addr {
        write_private(&dir.join("auth_addr"), &format!("{addr}\n"))?;
    }
    Ok(())
}

/// Reads an identity from `dir`, saying what to do when it is missing.
pub fn read(dir: &Path) -> Result<IdentityFiles> {
    if !dir.join("cert.pem").exists() {
        bail!(
            "no admin identity in {}: jctl runs on the auth host and needs the auth \
             service to have started there (with this data directory), and read access \
             to it (run as the same user, e.g. root)",
            dir.display()
        );
    }
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let auth_addr = match std::fs::read_to_string(dir.join("auth_addr")) {
        Ok(text) => Some(text.trim().to_string()).filter(|addr| !addr.is_empty()),
        Err(_) => None,
    };
    Ok(IdentityFiles {
        cert_pem: read("cert.pem")?,
        key_pem: read("key.pem")?,
        ca_pem: read("ca.pem")?,
        auth_addr,
    })
}
