//! Connecting to PostgreSQL, shared by the cluster-state backend, the audit log and the
//! recording store (`jumpgate_audit`'s PostgreSQL stores), so all read connection strings,
//! name the server in messages and speak TLS the same way; [`Pool`] is the few connections
//! the backend and the recording store lend one request (one transaction) at a time.
//!
//! TLS follows libpq's connection parameters, read here because tokio-postgres knows only
//! `sslmode=disable|prefer|require`:
//! - `sslmode=verify-full` checks the server's chain *and* its name; `verify-ca` the chain
//!   only. `require` is treated as `verify-full`: Jumpgate never sends a password over a
//!   connection whose server it has not verified.
//! - `sslrootcert=FILE`: the CAs to trust (PEM); without it, the system's roots.
//! - `sslcert=FILE` and `sslkey=FILE`: a client certificate, for `cert` authentication.
//! - `sslmode=prefer` and `allow` are refused: they silently fall back to no TLS.
//!   No `sslmode` means no TLS (as `disable`), unless `sslrootcert` is given.
//!
//! The files are read when the string is parsed, so a missing one stops the daemon at
//! start with the parameter that named it.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the server sends outside replies (notifications, notices); the stream ends when
/// the connection does. It must be polled for the connection to make progress.
pub type Messages = Pin<Box<dyn Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send>>;

/// A parsed connection string: where to connect and how, never printed with its password.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    endpoint: String,
    tls: Option<MakeRustlsConnect>,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The TLS parameters libpq takes and tokio-postgres does not.
#[derive(Debug, Default)]
struct TlsParams {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl TlsParams {
    /// Takes `name = value` if it is one of ours; `false` leaves it to tokio-postgres.
    fn take(&mut self, name: &str, value: &str) -> bool {
        let slot = match name {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            _ => return false,
        };
        *slot = Some(value.to_string());
        true
    }

    /// The rustls configuration these parameters ask for; `None` for no TLS.
    fn client_config(&self) -> Result<Option<rustls::ClientConfig>, String> {
        let verify_name = match self.mode.as_deref() {
            None if self.root_cert.is_none() => return self.no_tls(),
            Some("disable") => return self.no_tls(),
            None | Some("require" | "verify-full") => true,
            Some("verify-ca") => false,
            Some(mode @ ("prefer" | "allow")) => {
                return Err(format!(
                    "sslmode={mode} falls back to a connection without TLS; use \
                     sslmode=verify-full (with sslrootcert=FILE for a private CA), or \
                     sslmode=disable on a network you trust"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, require, verify-ca, verify-full"
                ));
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let pem = read("sslrootcert", path)?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("sslrootcert {path}: no PEM certificate in it"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A system certificate rustls cannot use is skipped, as browsers do.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err("TLS to PostgreSQL needs trusted CAs: the system has none; \
                                give sslrootcert=FILE"
                        .to_string());
                }
            }
        }
        let roots = Arc::new(roots);
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let builder = if verify_name {
            builder.with_root_certificates(roots)
        } else {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots,
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| format!("TLS setup: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
        };
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert_path), Some(key_path)) => {
                let cert_pem = read("sslcert", cert_path)?;
                let chain = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("sslcert {cert_path}: {e}"))?;
                if chain.is_empty() {
                    return Err(format!("sslcert {cert_path}: no PEM certificate in it"));
                }
                let key = PrivateKeyDer::from_pem_slice(&read("sslkey", key_path)?)
                    .map_err(|e| format!("sslkey {key_path}: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("sslcert {cert_path} and sslkey {key_path}: {e}"))?
            }
            _ => return Err("sslcert and sslkey go together: give both or neither".to_string()),
        };
        Ok(Some(config))
    }

    fn no_tls(&self) -> Result<Option<rustls::ClientConfig>, String> {
        if self.cert.is_some() || self.key.is_some() {
            return Err("sslcert/sslkey need TLS: add sslmode=verify-full".to_string());
        }
        Ok(None)
    }
}

fn read(param: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{param}: cannot read {path}: {e}"))
}

/// `sslmode=verify-ca`: the server's chain must lead to a trusted CA; its name is not
/// checked (libpq's meaning, for servers reached by an address their certificate omits).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Splits libpq's TLS parameters out of a connection string, returning the rest for
/// tokio-postgres in the same form (URL or `key=value` pairs).
fn split_tls(conn_string: &str) -> Result<(String, TlsParams), String> {
    let mut tls = TlsParams::default();
    let trimmed = conn_string.trim();
    if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
        if trimmed.contains('#') {
            return Err("a '#' fragment is not supported in the connection string".to_string());
        }
        let Some((base, query)) = trimmed.split_once('?') else {
            return Ok((trimmed.to_string(), tls));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !tls.take(name, &percent_decode(value)?) {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, tls));
    }
    let mut kept = Vec::new();
    for (name, value) in key_value_pairs(trimmed)? {
        if !tls.take(&name, &value) {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{name}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), tls))
}

/// Decodes `%XX` escapes of a URL query value.
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a bad %-escape in the connection string".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape that is not UTF-8".to_string())
}

/// libpq's `key=value` form: values bare or in single quotes with `\` escapes.
fn key_value_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            name.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "expected `=` after {name:?} in the connection string"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err("an unfinished escape in the connection string".into()),
                    },
                    Some(c) => value.push(c),
                    None => return Err("an unclosed quote in the connection string".into()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        pairs.push((name, value));
    }
}

impl PgTarget {
    /// Parses a libpq connection string (a `postgresql://` URL or `key=value` pairs);
    /// `password`, when given, replaces one in the string. The error says what is wrong
    /// without repeating the string (it may hold a password).
    pub fn parse(conn_string: &str, password: Option<&str>) -> Result<PgTarget, String> {
        let (rest, tls) = split_tls(conn_string)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            // The causes name the option or value (`unknown option `colour``), never the
            // password.
            .map_err(|err| format!("not a PostgreSQL connection string: {}", describe(&err)))?;
        let tls = tls.client_config()?.map(MakeRustlsConnect::new);
        // With TLS, a server that offers none is refused; without, none is asked for.
        config.ssl_mode(if tls.is_some() {
            SslMode::Require
        } else {
            SslMode::Disable
        });
        if let Some(password) = password {
            config.password(password.as_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("jumpgate");
        }
        let endpoint = endpoint_of(&config);
        Ok(PgTarget {
            config,
            endpoint,
            tls,
        })
    }

    /// Hosts, ports and database (`h1:5432,h2:5432/db`), for messages and logs.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The parsed settings, e.g. to fill in a connect timeout the string did not give.
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    /// Whether connections are made over TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens one connection; its [`Messages`] must be polled (see [`drive`]).
    pub async fn connect(&self) -> Result<(Client, Messages), tokio_postgres::Error> {
        match &self.tls {
            None => {
                let (client, mut connection) = self.config.connect(NoTls).await?;
                let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                Ok((client, Box::pin(messages)))
            }
            Some(tls) => {
                let (client, mut connection) = self.config.connect(tls.clone()).await?;
                let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                Ok((client, Box::pin(messages)))
            }
        }
    }
}

/// An error with its causes (`error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer`): tokio-postgres's own message leaves the cause out.
pub fn describe(err: &tokio_postgres::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Runs a connection in the background until it ends, ignoring notices; for connections
/// that do not listen for notifications.
pub fn drive(mut messages: Messages, endpoint: String) {
    use futures::StreamExt;
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            if let Err(err) = message {
                tracing::debug!(%endpoint, %err, "PostgreSQL connection ended");
                return;
            }
        }
    });
}

/// A few connections to one database, each lent to one request at a time, so that the
/// request may run a transaction on it. A connection is made on first use and again after
/// its borrower dropped it (set the slot to `None`: broken, timed out, or on a server that
/// turned read-only), so after a failover the next checkout finds the new primary.
pub struct Pool {
    target: PgTarget,
    slots: Vec<tokio::sync::Mutex<Option<Client>>>,
    next: AtomicUsize,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("endpoint", &self.target.endpoint())
            .field("size", &self.slots.len())
            .finish()
    }
}

/// Why [`Pool::checkout`] gave no connection.
#[derive(Debug)]
pub enum CheckoutError {
    /// Every connection stayed lent out for the whole wait.
    Busy,
    /// Connecting took longer than the wait.
    ConnectTimeout,
    /// Connecting failed (refused, unreachable, login refused, TLS).
    Connect(tokio_postgres::Error),
}

impl Pool {
    /// A pool of `size` connections (at least one) to `target`; none is made yet.
    pub fn new(target: PgTarget, size: usize) -> Pool {
        Pool {
            target,
            slots: (0..size.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Hosts, ports and database, for messages (never the password).
    pub fn endpoint(&self) -> &str {
        self.target.endpoint()
    }

    /// A free connection, made first if its slot has none (or a closed one); waiting for a
    /// free one and connecting both end within `timeout`. The guard holds a connection
    /// (`Some`); set it to `None` to drop a connection that is no good any more.
    pub async fn checkout(
        &self,
        timeout: Duration,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, CheckoutError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let slots = &self.slots;
        let start = self.next.fetch_add(1, Ordering::Relaxed) % slots.len().max(1);
        let free = (0..slots.len())
            .filter_map(|i| slots.get((start + i) % slots.len()))
            .find_map(|slot| slot.try_lock().ok());
        let mut guard = match free {
            Some(guard) => guard,
            None => match slots.get(start) {
                Some(slot) => tokio::time::timeout_at(deadline, slot.lock())
                    .await
                    .map_err(|_| CheckoutError::Busy)?,
                None => return Err(CheckoutError::Busy),
            },
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            let (client, messages) = tokio::time::timeout_at(deadline, self.target.connect())
                .await
                .map_err(|_| CheckoutError::ConnectTimeout)?
                .map_err(CheckoutError::Connect)?;
            drive(messages, self.target.endpoint().to_string());
            *guard = Some(client);
        }
        Ok(guard)
    }

    /// Closes every connection (waiting for the ones lent out to come back).
    pub async fn clear(&self) {
        for slot in &self.slots {
            *slot.lock().await = None;
        }
    }
}

/// `host:port,host:port/dbname`, for messages.
pub fn endpoint_of(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost".to_string()
    } else {
        hosts.join(",")
    };
    match config.get_dbname() {
        Some(db) => format!("{hosts}/{db}"),
        None => hosts,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_both_forms() {
        let (rest, tls) = split_tls(
            "postgresql://jg@db1:5432,db2/j?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem\
             &target_session_attrs=read-write&sslcert=/c.pem&sslkey=/k.pem",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://jg@db1:5432,db2/j?target_session_attrs=read-write"
        );
        assert_eq!(tls.mode.as_deref(), Some("verify-full"));
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            (tls.cert.as_deref(), tls.key.as_deref()),
            (Some("/c.pem"), Some("/k.pem"))
        );

        let (rest, tls) = split_tls(
            "host=db1 user = jg sslmode=verify-ca sslrootcert='/etc/my ca.pem' password='it\\'s'",
        )
        .unwrap();
        assert_eq!(rest, "host='db1' user='jg' password='it\\'s'");
        assert_eq!(tls.mode.as_deref(), Some("verify-ca"));
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/my ca.pem"));
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's"[..]));
    }

    #[test]
    fn unsafe_or_unknown_modes_and_half_client_certs_are_refused() {
        for (conn, expected) in [
            ("postgresql://db/j?sslmode=prefer", "falls back"),
            ("postgresql://db/j?sslmode=allow", "falls back"),
            ("postgresql://db/j?sslmode=verify-everything", "not one of"),
            (
                "postgresql://db/j?sslmode=verify-full&sslcert=/c.pem",
                "go together",
            ),
            ("postgresql://db/j?sslcert=/c.pem&sslkey=/k.pem", "need TLS"),
            (
                "postgresql://db/j?sslrootcert=/nonexistent/ca.pem",
                "sslrootcert: cannot read",
            ),
            (
                "postgresql://db/j?sslmode=verify-full&sslrootcert=%zz",
                "escape",
            ),
            ("host=db sslmode='verify-full", "unclosed quote"),
            ("host", "expected `=`"),
            ("postgresql://db/j#frag", "fragment"),
        ] {
            let err = PgTarget::parse(conn, None).unwrap_err();
            assert!(err.contains(expected), "{conn}: {err}");
        }
        // No sslmode and no root: plain, as before.
        assert!(
            !PgTarget::parse("postgresql://db/j", None)
                .unwrap()
                .uses_tls()
        );
        assert!(
            !PgTarget::parse("host=db sslmode=disable", None)
                .unwrap()
                .uses_tls()
        );
    }
}
