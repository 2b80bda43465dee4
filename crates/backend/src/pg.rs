//! Connecting to PostgreSQL, shared by the cluster-state backend and the audit log
//! (`jumpgate_audit`'s PostgreSQL store), so both read connection strings, name the server
//! in messages and (later) speak TLS the same way.

use std::fmt;
use std::pin::Pin;

use futures::Stream;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// What the server sends outside replies (notifications, notices); the stream ends when
/// the connection does. It must be polled for the connection to make progress.
pub type Messages = Pin<Box<dyn Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send>>;

/// A parsed connection string: where to connect and how, never printed with its password.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    endpoint: String,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl PgTarget {
    /// Parses a libpq connection string (a `postgresql://` URL or `key=value` pairs);
    /// `password`, when given, replaces one in the string. The error says what is wrong
    /// without repeating the string (it may hold a password).
    pub fn parse(conn_string: &str, password: Option<&str>) -> Result<PgTarget, String> {
        let mut config: tokio_postgres::Config = conn_string
            .parse()
            .map_err(|err| format!("not a PostgreSQL connection string: {err}"))?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(
                "sslmode=require asks for TLS, which Jumpgate does not speak to PostgreSQL yet"
                    .to_string(),
            );
        }
        if let Some(password) = password {
            config.password(password.as_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("jumpgate");
        }
        let endpoint = endpoint_of(&config);
        Ok(PgTarget { config, endpoint })
    }

    /// Hosts, ports and database (`h1:5432,h2:5432/db`), for messages and logs.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The parsed settings, e.g. to fill in a connect timeout the string did not give.
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    /// Opens one connection; its [`Messages`] must be polled (see [`drive`]).
    pub async fn connect(&self) -> Result<(Client, Messages), tokio_postgres::Error> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        Ok((client, Box::pin(messages)))
    }
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
