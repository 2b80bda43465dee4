//! The user's profile: the keys made at login and the certificates the cluster issued
//! for them, in one directory that only the user can read.
//!
//! Layout (flat: one profile, the last login, at a time), in `JUMPGATE_HOME`, else
//! `~/.jumpgate` (mode 0700, every file 0600, each written to a temporary file and
//! renamed into place so a crash never leaves half a key):
//!
//! | file | what |
//! |---|---|
//! | `profile.json` | proxy address, user, cluster, expiry, logins, roles, how the proxy's web certificate is trusted |
//! | `id_ed25519`, `id_ed25519.pub` | the SSH key made at login (OpenSSH format) |
//! | `id_ed25519-cert.pub` | the user's SSH certificate for it |
//! | `tls.key`, `tls.crt` | the TLS key made at login (PKCS#8 PEM) and the user's X.509 certificate |
//! | `tls_ca.pem` | the cluster's TLS CA certificates: trust root for the proxy and auth |
//! | `known_hosts` | `@cert-authority * ...` lines of the cluster's host CA, for `jsh ssh` and OpenSSH |
//!
//! The private keys never leave this directory: login sends only public keys.

use crate::error::ClientError;
use jumpgate_api::TlsCredentials;
use jumpgate_pki::ssh_key::{Certificate, Fingerprint, HashAlg, PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable naming the profile directory.
pub const HOME_ENV: &str = "JUMPGATE_HOME";

/// `profile.json`.
pub const PROFILE_FILE: &str = "profile.json";
/// The SSH private key.
pub const SSH_KEY_FILE: &str = "id_ed25519";
/// The SSH public key.
pub const SSH_PUBLIC_KEY_FILE: &str = "id_ed25519.pub";
/// The SSH user certificate (OpenSSH looks for `<key>-cert.pub` next to the key).
pub const SSH_CERT_FILE: &str = "id_ed25519-cert.pub";
/// The TLS private key.
pub const TLS_KEY_FILE: &str = "tls.key";
/// The user's X.509 certificate.
pub const TLS_CERT_FILE: &str = "tls.crt";
/// The cluster's TLS CA certificates.
pub const TLS_CA_FILE: &str = "tls_ca.pem";
/// The host CA as OpenSSH `known_hosts` lines.
pub const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// Every file a login writes, in the order they are written (`profile.json` last: a
/// profile is only there once its keys are).
pub const PROFILE_FILES: [&str; 8] = [
    SSH_KEY_FILE,
    SSH_PUBLIC_KEY_FILE,
    SSH_CERT_FILE,
    TLS_KEY_FILE,
    TLS_CERT_FILE,
    TLS_CA_FILE,
    KNOWN_HOSTS_FILE,
    PROFILE_FILE,
];

/// The profile directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

/// What `profile.json` holds: no secret, only what the certificates say and how to
/// reach the proxy again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileMeta {
    /// The proxy's public address, `host:port`.
    pub proxy: String,
    /// The Jumpgate user.
    pub user: String,
    /// The cluster's name.
    pub cluster: String,
    /// Unix seconds when the certificates expire.
    pub expires_unix: i64,
    /// The OS logins the certificate allows.
    pub principals: Vec<String>,
    /// The user's roles.
    pub roles: Vec<String>,
    /// The proxy's web certificate was not verified at login (`--insecure`).
    #[serde(default)]
    pub insecure: bool,
    /// The extra CA the proxy's web certificate was checked against (`--ca-cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// The file contents a login produces (the private keys among them: never log this).
pub(crate) struct ProfileFiles {
    pub ssh_private_key: String,
    pub ssh_public_key: String,
    pub ssh_certificate: String,
    pub tls_key: String,
    pub tls_certificate: String,
    pub tls_ca: String,
    pub known_hosts: String,
}

impl std::fmt::Debug for ProfileFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileFiles")
            .field("ssh_public_key", &self.ssh_public_key)
            .finish_non_exhaustive()
    }
}

/// A loaded profile: its directory and what `profile.json` says.
#[derive(Debug, Clone)]
pub struct Profile {
    home: Home,
    pub meta: ProfileMeta,
}

impl Home {
    /// The profile in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Home {
        Home { dir: dir.into() }
    }

    /// `JUMPGATE_HOME` if set (and not empty), else `$HOME/.jumpgate`.
    pub fn from_env() -> Result<Home, ClientError> {
        if let Some(dir) = std::env::var_os(HOME_ENV).filter(|dir| !dir.is_empty()) {
            return Ok(Home::new(dir));
        }
        let home = std::env::var_os("HOME")
            .filter(|dir| !dir.is_empty())
            .ok_or(ClientError::NoHome)?;
        Ok(Home::new(Path::new(&home).join(".jumpgate")))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the profile (one of the `*_FILE` names).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The profile of the last login; [`ClientError::NotLoggedIn`] if there is none.
    /// It may have expired: see [`Profile::check_valid`].
    pub fn load(&self) -> Result<Profile, ClientError> {
        let path = self.file(PROFILE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::NotLoggedIn {
                    home: self.dir.clone(),
                });
            }
            Err(err) => return Err(ClientError::io("read", &path)(err)),
        };
        let meta: ProfileMeta =
            serde_json::from_str(&text).map_err(|err| ClientError::BadProfile {
                path: path.clone(),
                reason: err.to_string(),
            })?;
        Ok(Profile {
            home: self.clone(),
            meta,
        })
    }

    /// Writes a login's files (keys first, `profile.json` last).
    pub(crate) fn save(
        &self,
        files: &ProfileFiles,
        meta: &ProfileMeta,
    ) -> Result<Profile, ClientError> {
        self.create_dir()?;
        let profile_json =
            serde_json::to_string_pretty(meta).map_err(|err| ClientError::BadResponse {
                what: "profile",
                reason: err.to_string(),
            })?;
        let contents: [(&str, &str); 8] = [
            (SSH_KEY_FILE, &files.ssh_private_key),
            (SSH_PUBLIC_KEY_FILE, &files.ssh_public_key),
            (SSH_CERT_FILE, &files.ssh_certificate),
            (TLS_KEY_FILE, &files.tls_key),
            (TLS_CERT_FILE, &files.tls_certificate),
            (TLS_CA_FILE, &files.tls_ca),
            (KNOWN_HOSTS_FILE, &files.known_hosts),
            (PROFILE_FILE, &profile_json),
        ];
        for (name, text) in contents {
            write_private(&self.file(name), text)?;
        }
        Ok(Profile {
            home: self.clone(),
            meta: meta.clone(),
        })
    }

    /// Removes the profile's keys and certificates; returns the files removed (none
    /// when nobody was logged in). The directory itself stays.
    pub fn logout(&self) -> Result<Vec<PathBuf>, ClientError> {
        let mut removed = Vec::new();
        // profile.json first: a half-removed profile then reads as "not logged in".
        for name in PROFILE_FILES.iter().rev() {
            let path = self.file(name);
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(ClientError::io("remove", &path)(err)),
            }
        }
        Ok(removed)
    }

    fn create_dir(&self) -> Result<(), ClientError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(ClientError::io("create", &self.dir))?;
        // An existing directory (made by hand, or by an older jsh) is tightened too.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(ClientError::io("restrict the permissions of", &self.dir))
    }
}

/// Writes `text` to `path` with mode 0600 through a temporary file in the same directory
/// and a rename, so readers see the old file or the new one, never a part.
fn write_private(path: &Path, text: &str) -> Result<(), ClientError> {
    jumpgate_api::files::write_private(path, text.as_bytes())
        .map_err(ClientError::io("write", path))
}

impl Profile {
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// When the certificates expire.
    pub fn expires(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(self.meta.expires_unix).unwrap_or(0))
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expires()
    }

    /// [`ClientError::Expired`] once the certificates are past their expiry.
    pub fn check_valid(&self, now: SystemTime) -> Result<(), ClientError> {
        if self.is_expired(now) {
            return Err(ClientError::Expired {
                user: self.meta.user.clone(),
                proxy: self.meta.proxy.clone(),
                expired: humantime::format_rfc3339_seconds(self.expires()).to_string(),
            });
        }
        Ok(())
    }

    fn read(&self, name: &str) -> Result<String, ClientError> {
        let path = self.home.file(name);
        std::fs::read_to_string(&path).map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                ClientError::NotLoggedIn {
                    home: self.home.dir.clone(),
                }
            } else {
                ClientError::io("read", &path)(err)
            }
        })
    }

    fn bad(&self, name: &str, reason: impl std::fmt::Display) -> ClientError {
        ClientError::BadProfile {
            path: self.home.file(name),
            reason: reason.to_string(),
        }
    }

    /// The user's TLS identity (certificate, key, cluster CAs).
    pub fn tls_credentials(&self) -> Result<TlsCredentials, ClientError> {
        Ok(TlsCredentials::from_pem(
            &self.read(TLS_CERT_FILE)?,
            &self.read(TLS_KEY_FILE)?,
            &self.read(TLS_CA_FILE)?,
        )?)
    }

    /// The user's SSH key and certificate.
    pub fn ssh_identity(&self) -> Result<(PrivateKey, Certificate), ClientError> {
        let key = PrivateKey::from_openssh(self.read(SSH_KEY_FILE)?)
            .map_err(|err| self.bad(SSH_KEY_FILE, err))?;
        let cert = Certificate::from_openssh(self.read(SSH_CERT_FILE)?.trim())
            .map_err(|err| self.bad(SSH_CERT_FILE, err))?;
        Ok((key, cert))
    }

    /// The SHA-256 fingerprints of the cluster's host CA keys (from `known_hosts`): what
    /// a node's host certificate must be signed by.
    pub fn host_ca_fingerprints(&self) -> Result<Vec<Fingerprint>, ClientError> {
        let keys = parse_host_ca_lines(&self.read(KNOWN_HOSTS_FILE)?)
            .map_err(|reason| self.bad(KNOWN_HOSTS_FILE, reason))?;
        if keys.is_empty() {
            return Err(self.bad(KNOWN_HOSTS_FILE, "no @cert-authority line"));
        }
        Ok(keys
            .iter()
            .map(|key| key.fingerprint(HashAlg::Sha256))
            .collect())
    }
}

/// Why a `@cert-authority` line of a `known_hosts` text is unusable; `line` counts from 1.
#[derive(Debug, thiserror::Error)]
pub enum HostCaLineError {
    /// The line has a host pattern and nothing after it.
    #[error("line {line}: no key after the host pattern")]
    NoKey { line: usize },
    /// What follows the host pattern is not an OpenSSH public key.
    #[error("line {line}: not an OpenSSH public key: {source}")]
    BadKey {
        line: usize,
        #[source]
        source: jumpgate_pki::ssh_key::Error,
    },
}

/// The keys of the `@cert-authority <hosts> <key>` lines of a `known_hosts` text (other
/// lines and comments are skipped).
pub fn parse_host_ca_lines(text: &str) -> Result<Vec<PublicKey>, HostCaLineError> {
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("@cert-authority") else {
            continue;
        };
        // "<hosts> <algorithm> <base64> [comment]"
        let key = rest
            .trim_start()
            .split_once(char::is_whitespace)
            .map(|(_hosts, key)| key.trim())
            .ok_or(HostCaLineError::NoKey { line: number + 1 })?;
        let key = PublicKey::from_openssh(key).map_err(|source| HostCaLineError::BadKey {
            line: number + 1,
            source,
        })?;
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> ProfileFiles {
        let key = jumpgate_pki::generate_ssh_key("test").unwrap();
        ProfileFiles {
            ssh_private_key: key.private_openssh,
            ssh_public_key: key.public_openssh,
            ssh_certificate: "cert".to_string(),
            tls_key: "key".to_string(),
            tls_certificate: "crt".to_string(),
            tls_ca: "ca".to_string(),
            known_hosts: "hosts".to_string(),
        }
    }

    fn meta() -> ProfileMeta {
        ProfileMeta {
            proxy: "proxy.example:3080".to_string(),
            user: "alice".to_string(),
            cluster: "dev".to_string(),
            expires_unix: 2_000_000_000,
            principals: vec!["root".to_string()],
            roles: vec!["access".to_string()],
            insecure: false,
            ca_cert: None,
        }
    }

    #[test]
    fn a_saved_profile_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("jg"));
        assert!(matches!(home.load(), Err(ClientError::NotLoggedIn { .. })));
        home.save(&files(), &meta()).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(home.dir()), 0o700);
        for name in PROFILE_FILES {
            assert_eq!(mode(&home.file(name)), 0o600, "{name}");
        }
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(home.dir()).unwrap().count(),
            PROFILE_FILES.len()
        );
        let profile = home.load().unwrap();
        assert_eq!(profile.meta, meta());
        assert!(
            profile
                .check_valid(UNIX_EPOCH + Duration::from_secs(1_999_999_999))
                .is_ok()
        );
        let expired = profile.check_valid(UNIX_EPOCH + Duration::from_secs(2_000_000_000));
        let message = expired.unwrap_err().to_string();
        assert!(message.contains("log in again"), "{message}");

        let removed = home.logout().unwrap();
        assert_eq!(removed.len(), PROFILE_FILES.len());
        assert!(matches!(home.load(), Err(ClientError::NotLoggedIn { .. })));
        assert!(home.logout().unwrap().is_empty());
    }

    #[test]
    fn a_broken_profile_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::write(home.file(PROFILE_FILE), "{not json").unwrap();
        let message = home.load().unwrap_err().to_string();
        assert!(message.contains("profile.json"), "{message}");
        assert!(message.contains("jsh login"), "{message}");
    }

    #[test]
    fn host_ca_lines_are_parsed() {
        let key = jumpgate_pki::generate_ssh_key("ca").unwrap();
        let text = format!(
            "# comment\nexample.com ssh-ed25519 AAAA\n@cert-authority * {}",
            key.public_openssh
        );
        let keys = parse_host_ca_lines(&text).unwrap();
        assert_eq!(keys.len(), 1);
        let err = parse_host_ca_lines("@cert-authority *").unwrap_err();
        assert!(matches!(err, HostCaLineError::NoKey { line: 1 }), "{err:?}");
        assert_eq!(err.to_string(), "line 1: no key after the host pattern");
        let err = parse_host_ca_lines("\n@cert-authority * ssh-ed25519 !!!").unwrap_err();
        assert!(
            matches!(err, HostCaLineError::BadKey { line: 2, .. }),
            "{err:?}"
        );
        let source = std::error::Error::source(&err);
        assert!(
            source.is_some_and(|s| s.downcast_ref::<jumpgate_pki::ssh_key::Error>().is_some()),
            "{err:?}"
        );
    }
}
