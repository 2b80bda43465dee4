//! Turning `jumpgate.storage` into an open [`Backend`]. Files the config points at
//! (etcd TLS material, password files) are read here, before any socket is bound, so a
//! bad path fails the start with the field that named it. (DynamoDB's credentials come from
//! the AWS chain when the backend connects, never from the config.)

use anyhow::{Context, Result, bail};
use jumpgate_backend::{
    Backend, BackendError, DynamoBackend, DynamoBilling, DynamoOptions, EtcdBackend, EtcdOptions,
    EtcdTls, MemoryBackend, PostgresBackend, PostgresOptions, SqliteBackend, SqliteOptions,
};
use jumpgate_types::Config;
use jumpgate_types::config::{
    DynamoBillingMode, DynamoConfig, EtcdConfig, PostgresConfig, StorageBackend,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The SQLite database file inside the storage directory (Teleport's name).
pub const SQLITE_FILE: &str = "sqlite.db";

/// A backend ready to be opened: everything read and checked.
#[derive(Debug, Clone)]
pub enum StoragePlan {
    Sqlite(SqliteOptions),
    Memory,
    Etcd(EtcdOptions),
    Postgres(PostgresOptions),
    Dynamo(DynamoOptions),
}

impl StoragePlan {
    pub fn from_config(config: &Config) -> Result<StoragePlan> {
        let storage = &config.jumpgate.storage;
        Ok(match &storage.backend {
            StorageBackend::Sqlite { .. } => StoragePlan::Sqlite(SqliteOptions::new(
                sqlite_path(config).context("internal: sqlite storage without a path")?,
            )),
            StorageBackend::Memory => StoragePlan::Memory,
            StorageBackend::Etcd(etcd) => StoragePlan::Etcd(etcd_options(etcd)?),
            StorageBackend::Postgres(postgres) => {
                StoragePlan::Postgres(postgres_options(postgres)?)
            }
            StorageBackend::Dynamo(dynamo) => StoragePlan::Dynamo(dynamo_options(dynamo)),
        })
    }

    /// A short description for logs, without secrets.
    pub fn describe(&self) -> String {
        match self {
            StoragePlan::Sqlite(options) => format!("sqlite at {}", options.path.display()),
            StoragePlan::Memory => "memory (lost at exit)".to_string(),
            StoragePlan::Etcd(options) => format!(
                "etcd at {} under {}",
                options.endpoints.join(","),
                options.prefix
            ),
            StoragePlan::Postgres(options) => format!(
                "postgresql at {}",
                options
                    .endpoint()
                    .unwrap_or_else(|_| "[unparsable connection string]".to_string())
            ),
            StoragePlan::Dynamo(options) => options.describe(),
        }
    }

    pub async fn open(&self) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(match self {
            StoragePlan::Sqlite(options) => Arc::new(SqliteBackend::open(options.clone()).await?),
            StoragePlan::Memory => Arc::new(MemoryBackend::new()),
            StoragePlan::Etcd(options) => Arc::new(EtcdBackend::connect(options.clone()).await?),
            StoragePlan::Postgres(options) => {
                Arc::new(PostgresBackend::connect(options.clone()).await?)
            }
            StoragePlan::Dynamo(options) => {
                Arc::new(DynamoBackend::connect(options.clone()).await?)
            }
        })
    }
}

/// The SQLite database file for this config, if it uses SQLite.
pub fn sqlite_path(config: &Config) -> Option<PathBuf> {
    config
        .jumpgate
        .storage
        .sqlite_dir(&config.jumpgate.data_dir)
        .map(|dir| dir.join(SQLITE_FILE))
}

fn read_file(field: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .with_context(|| format!("jumpgate.storage.{field}: cannot read {}", path.display()))
}

fn etcd_options(etcd: &EtcdConfig) -> Result<EtcdOptions> {
    let mut options = EtcdOptions::new(etcd.peers.clone(), etcd.prefix.clone());
    let uses_tls = etcd.peers.iter().any(|peer| peer.starts_with("https://"));
    if etcd.insecure {
        bail!(
            "jumpgate.storage.insecure: skipping etcd certificate verification is not \
             supported; give the CA that signed etcd's certificates in tls_ca_file"
        );
    }
    if uses_tls || etcd.tls_ca_file.is_some() || etcd.tls_cert_file.is_some() {
        let ca_pem = etcd
            .tls_ca_file
            .as_deref()
            .map(|path| read_file("tls_ca_file", path))
            .transpose()?;
        let client_cert_pem = match (&etcd.tls_cert_file, &etcd.tls_key_file) {
            (Some(cert), Some(key)) => Some((
                read_file("tls_cert_file", cert)?,
                read_file("tls_key_file", key)?,
            )),
            _ => None,
        };
        options.tls = Some(EtcdTls {
            ca_pem,
            client_cert_pem,
        });
    }
    if let (Some(user), Some(password_file)) = (&etcd.username, &etcd.password_file) {
        options.credentials = Some((user.clone(), read_password(password_file)?));
    }
    Ok(options)
}

fn postgres_options(postgres: &PostgresConfig) -> Result<PostgresOptions> {
    let mut options = PostgresOptions::new(postgres.conn_string.clone());
    // The driver's own parser, before any socket: the config check only caught the obvious.
    if let Err(err) = options.endpoint() {
        bail!("jumpgate.storage.conn_string: {err}");
    }
    if let Some(password_file) = &postgres.password_file {
        options.password = Some(read_password(password_file)?);
    }
    Ok(options)
}

/// Credentials are not read here: the AWS SDK's standard chain finds them when the backend
/// connects (environment, profile, instance or task role).
fn dynamo_options(dynamo: &DynamoConfig) -> DynamoOptions {
    let mut options = DynamoOptions::new(dynamo.region.clone(), dynamo.table_name.clone());
    options.endpoint = dynamo.endpoint.clone();
    options.billing = match dynamo.billing {
        DynamoBillingMode::PayPerRequest => DynamoBilling::PayPerRequest,
        DynamoBillingMode::Provisioned {
            read_capacity_units,
            write_capacity_units,
        } => DynamoBilling::Provisioned {
            read_capacity_units,
            write_capacity_units,
        },
    };
    options
}

/// A password file's text without its final line break.
fn read_password(path: &Path) -> Result<String> {
    let password = String::from_utf8(read_file("password_file", path)?).with_context(|| {
        format!(
            "jumpgate.storage.password_file: {} is not UTF-8 text",
            path.display()
        )
    })?;
    Ok(password.trim_end_matches(['\r', '\n']).to_string())
}
