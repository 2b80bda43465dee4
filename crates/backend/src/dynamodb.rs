//! The DynamoDB backend (`storage.type: dynamodb`), for clusters that run on AWS (seed 004:
//! auth servers in one region, cluster state in DynamoDB).
//!
//! Decisions:
//! - **One table** (`table_name`, created if missing; two auth servers starting together
//!   both survive the race). Its key is `HashKey` (partition, string) + `FullPath` (sort,
//!   string), and three partitions live in it: `jumpgate` holds the items (sort key = the
//!   Jumpgate key: DynamoDB orders strings by their UTF-8 bytes, so ranges order bytewise as
//!   on every other backend), `jumpgate-meta` the revision counter, the prune mark and the
//!   layout version, `jumpgate-log` the change log. A sparse global secondary index
//!   (`jumpgate-expiry`, on `Expiring` + `ExpiresMs`) lists only items that expire, so the
//!   sweeper finds them without reading the whole state. DynamoDB's own TTL is enabled on
//!   `Expires` (whole seconds), so expired items and old log entries disappear even when no
//!   Jumpgate runs; reads still filter by the exact expiry (`ExpiresMs`).
//! - **Revisions** come from the counter item. Every write reads it (and, in the same
//!   `TransactGetItems` snapshot, the items it decides on), decides on the client, and
//!   commits with one `TransactWriteItems` that moves the counter from the value it read to
//!   the next one *on condition that it still holds the value read*, writes the items, and
//!   appends the change to the log. A write that lost the race (the counter moved, or
//!   DynamoDB reports a transaction conflict) reads again and retries with jittered backoff,
//!   within the request timeout. So every successful write is serialised on the counter:
//!   revisions are dense (1, 2, 3, ...), follow commit order, survive restarts, and
//!   conditional and atomic writes see exactly the state they commit on (every change goes
//!   through the counter; DynamoDB's TTL only removes items that reads treat as gone
//!   already). A plain atomic `ADD` on the counter was rejected: a transaction cannot return
//!   the number it took, so the item could not carry its own revision.
//!   **Cost**: two round trips per write (read, then transact; more under contention), and
//!   one writer at a time cluster-wide: the counter is one item, each transaction writes it,
//!   and writers that collide retry. Expect some tens of writes a second from one region,
//!   plenty for cluster state (logins, heartbeats), not for audit events. Every write also
//!   costs about double its size in write units (transactions cost two units per KB) plus
//!   the log entry.
//! - **Watch: a change log in the table, polled**, not DynamoDB Streams. Streams keep order
//!   per item only: records of different items may sit in different shards (the single
//!   partition key splits by sort key under load), shards roll over every few hours, and a
//!   transaction's records are not grouped, so a reader cannot rebuild one revision order
//!   from them, let alone prove it saw every change. Instead each write transaction puts its
//!   changes in one or more log entries keyed by revision (`{revision:020}.{chunk:04}`, each
//!   entry saying how many chunks its revision has). Revisions are dense, so a watcher that
//!   has delivered revision N reads the entries from N+1 with a strongly consistent query and
//!   delivers a revision only when all its chunks are there and it is exactly the next one: it
//!   can never deliver N+1 before N, and a query that sees part of a transaction (DynamoDB
//!   queries are read-committed per item, not snapshots) just waits a moment and reads
//!   again. DynamoDB has no notifications, so watchers poll (every 250 ms by default, one
//!   small query each; writes made by this process wake this process's watchers at once).
//!   The position is a revision in the table, so an unreachable endpoint is survived with
//!   nothing lost or doubled. **Cost**: each change is stored twice (item and log entry),
//!   events from other auth servers arrive up to one poll interval late, every watcher
//!   queries about four times a second even when nothing changes, and the log is
//!   pruned after `change_retention` (10 minutes; a prune mark in the meta item records how
//!   far): a watcher further behind than that ends with `FellBehind` and its subscriber
//!   re-reads, as after an etcd compaction.
//! - **Expiry** uses the writer's clock, as on the other backends: reads filter out items
//!   whose `ExpiresMs` has passed; a sweeper on every auth server (every 500 ms) queries the
//!   expiry index and deletes what has expired through the counter, so watchers get a delete
//!   event. Auth servers' clocks must agree to well under a TTL.
//! - **Limits**: DynamoDB items hold at most 400 KB, so values are limited to 350 KB; one
//!   transaction holds at most 100 writes, so an atomic write may touch about 90 keys, and a
//!   range delete of more than 90 items is done in several steps (each atomic, each its own
//!   revision); watchers see every delete either way.
//! - **Credentials** come from the standard AWS chain (environment, profile, SSO, instance or
//!   task role), resolved once at start so that missing credentials fail the start with a
//!   clear error. Errors name the table, region and endpoint, and for refused credentials the
//!   access key id, never the secret.

use crate::Backend;
use crate::error::{BackendError, Result};
use crate::tasks::{abort_tasks, jitter};
use crate::types::{
    Action, Condition, Event, Item, Key, KeyRange, NewItem, Revision, from_unix_millis, is_expired,
    to_unix_millis,
};
use crate::watch::{WatchError, Watcher};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::{Credentials, ProvideCredentials, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, Get, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, ProvisionedThroughput, Put,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactGetItem,
    TransactWriteItem, Update,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};

const BACKEND: &str = "dynamodb";
/// Bumped when the table layout changes; older binaries refuse a newer layout.
const SCHEMA_VERSION: i64 = 1;

// Attribute names.
const HASH_KEY: &str = "HashKey";
const SORT_KEY: &str = "FullPath";
const VALUE: &str = "Value";
const REVISION: &str = "Rev";
const EXPIRES_MS: &str = "ExpiresMs";
/// DynamoDB's TTL attribute: whole seconds since the epoch.
const EXPIRES_TTL: &str = "Expires";
/// Set (to [`ITEMS`]) only on items that expire: the expiry index's partition key.
const EXPIRING: &str = "Expiring";
const PRUNED: &str = "Pruned";
const LAYOUT: &str = "SchemaVersion";
const CHUNKS: &str = "Chunks";
const CHANGES: &str = "Changes";
const AT: &str = "At";

// Partitions and fixed sort keys.
const ITEMS: &str = "jumpgate";
const META: &str = "jumpgate-meta";
const META_COUNTER: &str = "revision";
const LOG: &str = "jumpgate-log";
const EXPIRY_INDEX: &str = "jumpgate-expiry";

/// The largest value we store: a DynamoDB item holds at most 400 KB, key and names included.
const MAX_VALUE: usize = 350 * 1024;
/// A log entry is packed up to about this size (a single large put gets one of its own).
const CHUNK_BYTES: usize = 300 * 1024;
/// DynamoDB allows 100 writes per transaction; the counter takes one, log entries a few.
const MAX_TRANSACTION: usize = 100;
/// Items read per `TransactGetItems`: DynamoDB takes 100, but moto (the emulator the tests
/// use) still enforces the old limit of 25, and reading in chunks costs nothing in
/// correctness (see `read_state`).
const TRANSACT_GET_BATCH: usize = 25;
/// Items deleted per transaction by a range delete or the sweeper.
const DELETE_BATCH: usize = 90;
/// Log entries a watcher reads per query.
const WATCH_BATCH: i32 = 256;
/// How often a watcher that finds nothing new checks the counter for lost log entries.
const META_CHECK: Duration = Duration::from_secs(5);
/// How long a watcher waits for a missing revision to appear before it gives up on it.
const GAP_PATIENCE: Duration = Duration::from_secs(30);

/// How the table is billed when Jumpgate creates it (`billing_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamoBilling {
    /// On-demand capacity (`pay_per_request`).
    PayPerRequest,
    /// Fixed capacity (`provisioned`), also used for the expiry index.
    Provisioned {
        read_capacity_units: i64,
        write_capacity_units: i64,
    },
}

/// Static credentials, for tests and emulators; production uses the standard AWS chain.
#[derive(Clone)]
pub struct DynamoCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for DynamoCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

/// Where the table is and how to reach it.
#[derive(Debug, Clone)]
pub struct DynamoOptions {
    /// The AWS region, e.g. `us-east-1`.
    pub region: String,
    /// The table; created if missing.
    pub table_name: String,
    /// Another endpoint than AWS's for the region (a local emulator), as a URL.
    pub endpoint: Option<String>,
    /// How a table Jumpgate creates is billed.
    pub billing: DynamoBilling,
    /// `None`: the standard AWS credential chain.
    pub credentials: Option<DynamoCredentials>,
    /// How long connecting to the endpoint may take.
    pub connect_timeout: Duration,
    /// How long one request (with the SDK's retries, and ours after lost races) may take.
    pub request_timeout: Duration,
    /// How often expired items are swept out.
    pub sweep_interval: Duration,
    /// How long log entries are kept for watchers that fall behind.
    pub change_retention: Duration,
    /// How often a watcher looks for changes made by other processes.
    pub poll_interval: Duration,
    /// How many events a watcher may lag behind before it is told to re-sync.
    pub watch_buffer: usize,
}

impl DynamoOptions {
    pub fn new(region: impl Into<String>, table_name: impl Into<String>) -> DynamoOptions {
        DynamoOptions {
            region: region.into(),
            table_name: table_name.into(),
            endpoint: None,
            billing: DynamoBilling::PayPerRequest,
            credentials: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_millis(500),
            change_retention: Duration::from_secs(600),
            poll_interval: Duration::from_millis(250),
            watch_buffer: 4096,
        }
    }

    /// "table T in region R at E", for messages.
    pub fn describe(&self) -> String {
        let endpoint = match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("the AWS endpoint of {}", self.region),
        };
        format!(
            "DynamoDB table {} in region {} at {endpoint}",
            self.table_name, self.region
        )
    }
}

/// A [`Backend`] on a DynamoDB table. Cheap to clone; clones share the client.
#[derive(Clone)]
pub struct DynamoBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    options: DynamoOptions,
    /// "DynamoDB table T in region R at E", for messages.
    place: String,
    /// The access key id of the credentials in use, for messages (never the secret).
    access_key_id: String,
    closed: AtomicBool,
    /// Bumped after each of this process's writes, so its watchers look at once.
    wake: watch::Sender<u64>,
    tasks: StdMutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        abort_tasks(&self.tasks);
    }
}

impl fmt::Debug for DynamoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoBackend")
            .field("place", &self.inner.place)
            .finish()
    }
}

/// One write of a transaction.
#[derive(Debug, Clone)]
enum Write {
    Put(NewItem),
    Delete(Key),
}

/// The items (live or expired) of the keys a write looked at.
type Live = HashMap<Key, Item>;
/// Decides a transaction's writes from what it read; may run several times (retries).
type Decide<'a> = &'a (dyn Fn(&Live) -> Result<Vec<Write>> + Send + Sync);
type Attrs = HashMap<String, AttributeValue>;

/// Why a commit did not happen.
enum Lost {
    /// Another writer was first: read again and retry.
    Race,
    Failed(BackendError),
}

impl DynamoBackend {
    /// Resolves credentials, checks that DynamoDB answers, and creates the table if
    /// missing; a clear error naming the table, region and endpoint otherwise. Must be
    /// called inside a Tokio runtime: a background task sweeps expired items.
    pub async fn connect(options: DynamoOptions) -> Result<DynamoBackend> {
        if let Some(endpoint) = &options.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(BackendError::InvalidArgument(format!(
                "the DynamoDB endpoint (storage.endpoint) {endpoint:?} must be an http:// or \
                 https:// URL"
            )));
        }
        let place = options.describe();
        let timeouts = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .connect_timeout(options.connect_timeout)
            .operation_attempt_timeout(options.request_timeout)
            .operation_timeout(options.request_timeout)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(options.region.clone()))
            .timeout_config(timeouts.clone());
        if let Some(static_credentials) = &options.credentials {
            loader = loader.credentials_provider(Credentials::new(
                static_credentials.access_key_id.clone(),
                static_credentials.secret_access_key.clone(),
                None,
                None,
                "jumpgate-static",
            ));
        }
        let sdk = loader.load().await;
        let access_key_id = resolve_credentials(&sdk, &place, options.connect_timeout).await?;
        let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .timeout_config(timeouts)
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(2),
            );
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        let (wake, _) = watch::channel(0u64);
        let backend = DynamoBackend {
            inner: Arc::new(Inner {
                client: Client::from_conf(config.build()),
                options,
                place,
                access_key_id,
                closed: AtomicBool::new(false),
                wake,
                tasks: StdMutex::new(Vec::new()),
            }),
        };
        backend.ensure_table().await?;
        let sweeper = spawn_sweeper(
            Arc::downgrade(&backend.inner),
            backend.inner.options.sweep_interval,
            // Pruning more often than entries age out is wasted work; less often than
            // every 10 s lets the log grow for nothing.
            backend
                .inner
                .options
                .change_retention
                .clamp(Duration::ZERO, Duration::from_secs(10)),
        );
        if let Ok(mut tasks) = backend.inner.tasks.lock() {
            tasks.push(sweeper);
        }
        tracing::info!(place = %backend.inner.place, "DynamoDB backend ready");
        Ok(backend)
    }

    /// "DynamoDB table T in region R at E".
    pub fn place(&self) -> &str {
        &self.inner.place
    }

    fn table(&self) -> &str {
        &self.inner.options.table_name
    }

    fn unavailable(&self, detail: impl fmt::Display) -> BackendError {
        BackendError::Unavailable {
            backend: BACKEND,
            detail: format!("{}: {detail}", self.inner.place),
        }
    }

    fn internal(&self, detail: impl fmt::Display) -> BackendError {
        BackendError::Internal {
            backend: BACKEND,
            detail: format!("{}: {detail}", self.inner.place),
        }
    }

    fn corrupt(&self, detail: impl fmt::Display) -> BackendError {
        BackendError::Corrupt {
            backend: BACKEND,
            location: self.inner.place.clone(),
            detail: detail.to_string(),
        }
    }

    /// Turns an SDK error into a [`BackendError`] that says what to do.
    fn classify<E>(&self, err: &SdkError<E, HttpResponse>) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match err {
            SdkError::TimeoutError(_) => self.unavailable(format_args!(
                "no answer within {:?}",
                self.inner.options.request_timeout
            )),
            SdkError::DispatchFailure(failure) => {
                let detail = DisplayErrorContext(err).to_string();
                if failure.is_user() || detail.contains("credentials") {
                    self.credentials_refused(&detail)
                } else {
                    self.unavailable(format_args!("cannot reach the endpoint: {detail}"))
                }
            }
            SdkError::ResponseError(_) => self.unavailable(format_args!(
                "unreadable answer: {}",
                DisplayErrorContext(err)
            )),
            SdkError::ServiceError(context) => {
                let status = context.raw().status().as_u16();
                let service = context.err();
                let message = service.message().unwrap_or_default();
                let code = match service.code() {
                    Some(code) => code,
                    // An answer the SDK could not read a code from (emulators answer auth
                    // failures in another protocol's format): go by the HTTP status.
                    None if status == 401 || status == 403 => {
                        return self.credentials_refused(&format!("HTTP {status}"));
                    }
                    None if status >= 500 => {
                        return self.unavailable(format_args!("HTTP {status}; retry later"));
                    }
                    None => "unknown",
                };
                match code {
                    "UnrecognizedClientException"
                    | "InvalidClientTokenId"
                    | "InvalidSignatureException"
                    | "SignatureDoesNotMatch"
                    | "IncompleteSignature"
                    | "MissingAuthenticationToken"
                    | "ExpiredTokenException"
                    | "AccessDeniedException" => {
                        self.credentials_refused(&format!("{code}: {message}"))
                    }
                    "ResourceNotFoundException" => self.internal(format_args!(
                        "the table does not exist (any more): {message}; if it was deleted, or \
                         the endpoint lost its data, restart Jumpgate to create it again"
                    )),
                    "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "TransactionInProgressException"
                    | "LimitExceededException" => {
                        self.unavailable(format_args!("{code}: {message}; retry later"))
                    }
                    _ => self.internal(format_args!("{code}: {message}")),
                }
            }
            _ => self.internal(DisplayErrorContext(err)),
        }
    }

    fn credentials_refused(&self, detail: &str) -> BackendError {
        credentials_error(&self.inner.place, &self.inner.access_key_id, detail)
    }

    async fn ensure_table(&self) -> Result<()> {
        let described = self
            .inner
            .client
            .describe_table()
            .table_name(self.table())
            .send()
            .await;
        let table = match described {
            Ok(output) => output.table,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                self.create_table().await?;
                None
            }
            Err(err) => return Err(self.classify(&err)),
        };
        let table = match table {
            Some(table) if table.table_status() == Some(&TableStatus::Active) => table,
            _ => self.wait_active().await?,
        };
        let hash = table
            .key_schema()
            .iter()
            .find(|k| *k.key_type() == KeyType::Hash)
            .map(|k| k.attribute_name());
        let range = table
            .key_schema()
            .iter()
            .find(|k| *k.key_type() == KeyType::Range)
            .map(|k| k.attribute_name());
        let has_index = table
            .global_secondary_indexes()
            .iter()
            .any(|index| index.index_name() == Some(EXPIRY_INDEX));
        if hash != Some(HASH_KEY) || range != Some(SORT_KEY) || !has_index {
            return Err(BackendError::InvalidArgument(format!(
                "{}: the table exists but is not a Jumpgate table (key {HASH_KEY}+{SORT_KEY} \
                 and index {EXPIRY_INDEX} expected); choose another storage.table_name",
                self.inner.place
            )));
        }
        self.enable_ttl().await?;
        // The counter starts at 0 in a new table; an existing one keeps its value.
        let created = self
            .inner
            .client
            .put_item()
            .table_name(self.table())
            .item(HASH_KEY, s(META))
            .item(SORT_KEY, s(META_COUNTER))
            .item(REVISION, n(0))
            .item(PRUNED, n(0))
            .item(LAYOUT, n(SCHEMA_VERSION))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", HASH_KEY)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(err) => return Err(self.classify(&err)),
        }
        let meta = self.read_meta().await?;
        if meta.layout > SCHEMA_VERSION {
            return Err(self.corrupt(format_args!(
                "the table has layout version {}, written by a newer Jumpgate (this one knows \
                 {SCHEMA_VERSION}); upgrade this auth server",
                meta.layout
            )));
        }
        Ok(())
    }

    async fn create_table(&self) -> Result<()> {
        let attribute = |name: &str, kind: ScalarAttributeType| {
            built(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(kind)
                    .build(),
            )
        };
        let key = |name: &str, kind: KeyType| {
            built(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build(),
            )
        };
        let mut index = GlobalSecondaryIndex::builder()
            .index_name(EXPIRY_INDEX)
            .key_schema(key(EXPIRING, KeyType::Hash)?)
            .key_schema(key(EXPIRES_MS, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            );
        let mut request = self
            .inner
            .client
            .create_table()
            .table_name(self.table())
            .attribute_definitions(attribute(HASH_KEY, ScalarAttributeType::S)?)
            .attribute_definitions(attribute(SORT_KEY, ScalarAttributeType::S)?)
            .attribute_definitions(attribute(EXPIRING, ScalarAttributeType::S)?)
            .attribute_definitions(attribute(EXPIRES_MS, ScalarAttributeType::N)?)
            .key_schema(key(HASH_KEY, KeyType::Hash)?)
            .key_schema(key(SORT_KEY, KeyType::Range)?);
        match self.inner.options.billing {
            DynamoBilling::PayPerRequest => {
                request = request.billing_mode(BillingMode::PayPerRequest);
            }
            DynamoBilling::Provisioned {
                read_capacity_units,
                write_capacity_units,
            } => {
                let throughput = built(
                    ProvisionedThroughput::builder()
                        .read_capacity_units(read_capacity_units)
                        .write_capacity_units(write_capacity_units)
                        .build(),
                )?;
                index = index.provisioned_throughput(throughput.clone());
                request = request
                    .billing_mode(BillingMode::Provisioned)
                    .provisioned_throughput(throughput);
            }
        }
        let request = request.global_secondary_indexes(built(index.build())?);
        tracing::info!(place = %self.inner.place, "creating the DynamoDB table");
        match request.send().await {
            Ok(_) => Ok(()),
            // Another auth server created it meanwhile.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(self.classify(&err)),
        }
    }

    /// Waits (bounded) until a new table is ready.
    async fn wait_active(&self) -> Result<aws_sdk_dynamodb::types::TableDescription> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let output = self
                .inner
                .client
                .describe_table()
                .table_name(self.table())
                .send()
                .await
                .map_err(|err| self.classify(&err))?;
            if let Some(table) = output.table
                && table.table_status() == Some(&TableStatus::Active)
            {
                return Ok(table);
            }
            if Instant::now() > deadline {
                return Err(self.unavailable("the table did not become ACTIVE within 5 minutes"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn enable_ttl(&self) -> Result<()> {
        let status = self
            .inner
            .client
            .describe_time_to_live()
            .table_name(self.table())
            .send()
            .await
            .map_err(|err| self.classify(&err))?;
        let enabled = status
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status())
            .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        if enabled {
            return Ok(());
        }
        let spec = built(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(EXPIRES_TTL)
                .build(),
        )?;
        match self
            .inner
            .client
            .update_time_to_live()
            .table_name(self.table())
            .time_to_live_specification(spec)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => {
                // Another auth server enabling it at the same moment is fine.
                let code = err
                    .as_service_error()
                    .and_then(|e| e.code().map(str::to_owned));
                if code.as_deref() == Some("ValidationException") {
                    tracing::debug!(place = %self.inner.place, err = %DisplayErrorContext(&err),
                        "enabling TTL raced with another auth server");
                    Ok(())
                } else {
                    Err(self.classify(&err))
                }
            }
        }
    }

    async fn read_meta(&self) -> Result<Meta> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let output = self
            .inner
            .client
            .get_item()
            .table_name(self.table())
            .key(HASH_KEY, s(META))
            .key(SORT_KEY, s(META_COUNTER))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| self.classify(&err))?;
        match output.item {
            Some(item) => self.meta_from(&item),
            None => Err(self.internal(
                "the revision counter is missing: the table was emptied or the endpoint lost \
                 its data; restart Jumpgate to start afresh",
            )),
        }
    }

    fn meta_from(&self, item: &Attrs) -> Result<Meta> {
        Ok(Meta {
            counter: self.number(item, REVISION, "the revision counter")?,
            pruned: self.number(item, PRUNED, "the prune mark")?,
            layout: self.number(item, LAYOUT, "the layout version")?,
        })
    }

    fn number(&self, item: &Attrs, name: &str, what: &str) -> Result<i64> {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| self.corrupt(format_args!("{what} ({name}) is not a number")))
    }

    /// The counter and the stored items (live or expired) of `keys`, in one snapshot.
    async fn read_state(&self, keys: &[Key]) -> std::result::Result<(i64, Live), Lost> {
        // The counter comes first (in the first request): every later change moves it, so a
        // commit conditioned on it proves that nothing read here changed meanwhile, even
        // when the keys take several requests.
        let counter = Get::builder()
            .table_name(self.table())
            .key(HASH_KEY, s(META))
            .key(SORT_KEY, s(META_COUNTER))
            .build();
        let mut gets = vec![built(counter).map_err(Lost::Failed)?];
        for key in keys {
            let get = Get::builder()
                .table_name(self.table())
                .key(HASH_KEY, s(ITEMS))
                .key(SORT_KEY, s(key.as_str()))
                .build();
            gets.push(built(get).map_err(Lost::Failed)?);
        }
        let mut meta = None;
        let mut live = Live::new();
        for batch in gets.chunks(TRANSACT_GET_BATCH) {
            let items = batch
                .iter()
                .map(|get| TransactGetItem::builder().get(get.clone()).build())
                .collect();
            let output = match self
                .inner
                .client
                .transact_get_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(output) => output,
                Err(err) => {
                    let code = err.as_service_error().and_then(|e| e.code());
                    if matches!(
                        code,
                        Some("TransactionCanceledException" | "TransactionConflictException")
                    ) {
                        return Err(Lost::Race);
                    }
                    return Err(Lost::Failed(self.classify(&err)));
                }
            };
            let mut responses = output.responses().iter();
            if meta.is_none() {
                meta = match responses.next().and_then(|r| r.item()) {
                    Some(item) => Some(self.meta_from(item).map_err(Lost::Failed)?),
                    None => {
                        return Err(Lost::Failed(self.internal(
                            "the revision counter is missing: the table was emptied or the \
                             endpoint lost its data; restart Jumpgate to start afresh",
                        )));
                    }
                };
            }
            for response in responses {
                if let Some(attrs) = response.item() {
                    let item = self.item_from(attrs).map_err(Lost::Failed)?;
                    live.insert(item.key.clone(), item);
                }
            }
        }
        match meta {
            Some(meta) => Ok((meta.counter, live)),
            None => Err(Lost::Failed(
                self.internal("no answer for the revision counter"),
            )),
        }
    }

    fn item_from(&self, attrs: &Attrs) -> Result<Item> {
        let key = attrs
            .get(SORT_KEY)
            .and_then(|v| v.as_s().ok())
            .and_then(|text| Key::new(text.clone()).ok())
            .ok_or_else(|| self.corrupt("an item's key is not a Jumpgate key"))?;
        let value = match attrs.get(VALUE) {
            None => Vec::new(),
            Some(AttributeValue::B(blob)) => blob.as_ref().to_vec(),
            Some(_) => return Err(self.corrupt(format_args!("the value of {key} is not binary"))),
        };
        let revision = self.number(attrs, REVISION, "an item's revision")?;
        let expires = match attrs.get(EXPIRES_MS) {
            None => None,
            Some(_) => Some(from_unix_millis(self.number(
                attrs,
                EXPIRES_MS,
                "an item's expiry",
            )?)),
        };
        Ok(Item {
            key,
            value,
            expires,
            revision: Revision(revision),
        })
    }

    /// One write: reads the counter and `keys`, lets `decide` turn them into writes (or
    /// refuse), and commits them on condition that the counter has not moved; retries
    /// (re-reading) when another writer was first. Returns the revision (`None` when there
    /// was nothing to write) and how many live items were deleted.
    async fn transact(&self, keys: &[Key], decide: Decide<'_>) -> Result<(Option<Revision>, u64)> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let started = Instant::now();
        let mut delay = Duration::from_millis(5);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = match self.read_state(keys).await {
                Ok((counter, live)) => {
                    let writes = decide(&live)?;
                    if writes.is_empty() {
                        return Ok((None, 0));
                    }
                    let deleted = writes
                        .iter()
                        .filter(|w| match w {
                            Write::Delete(key) => live
                                .get(key)
                                .is_some_and(|i| !is_expired(i.expires, SystemTime::now())),
                            Write::Put(_) => false,
                        })
                        .count();
                    self.commit(counter, writes)
                        .await
                        .map(|revision| (revision, u64::try_from(deleted).unwrap_or(u64::MAX)))
                }
                Err(lost) => Err(lost),
            };
            match outcome {
                Ok((revision, deleted)) => {
                    self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
                    return Ok((Some(revision), deleted));
                }
                Err(Lost::Failed(err)) => return Err(err),
                Err(Lost::Race) => {
                    if started.elapsed() > self.inner.options.request_timeout {
                        return Err(self.unavailable(format_args!(
                            "{attempts} attempts in {:?} all lost the race for the revision \
                             counter to other writers; retry later",
                            started.elapsed()
                        )));
                    }
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// Commits `writes` as revision `counter + 1`, if the counter still holds `counter`.
    async fn commit(
        &self,
        counter: i64,
        writes: Vec<Write>,
    ) -> std::result::Result<Revision, Lost> {
        let revision = counter + 1;
        let now = to_unix_millis(SystemTime::now());
        let table = self.table();
        let mut items = Vec::with_capacity(writes.len() + 2);
        items.push(
            TransactWriteItem::builder()
                .update(
                    built(
                        Update::builder()
                            .table_name(table)
                            .key(HASH_KEY, s(META))
                            .key(SORT_KEY, s(META_COUNTER))
                            .update_expression("SET #r = :next")
                            .condition_expression("#r = :read")
                            .expression_attribute_names("#r", REVISION)
                            .expression_attribute_values(":next", n(revision))
                            .expression_attribute_values(":read", n(counter))
                            .build(),
                    )
                    .map_err(Lost::Failed)?,
                )
                .build(),
        );
        let mut chunks: Vec<(Vec<AttributeValue>, usize)> = Vec::new();
        for write in &writes {
            let (change, size) = match write {
                Write::Put(item) => {
                    let mut attrs = Attrs::new();
                    attrs.insert(HASH_KEY.into(), s(ITEMS));
                    attrs.insert(SORT_KEY.into(), s(item.key.as_str()));
                    attrs.insert(REVISION.into(), n(revision));
                    if !item.value.is_empty() {
                        attrs.insert(
                            VALUE.into(),
                            AttributeValue::B(Blob::new(item.value.clone())),
                        );
                    }
                    if let Some(expires) = item.expires {
                        let ms = to_unix_millis(expires);
                        attrs.insert(EXPIRES_MS.into(), n(ms));
                        attrs.insert(EXPIRES_TTL.into(), n(ms.saturating_add(999) / 1000));
                        attrs.insert(EXPIRING.into(), s(ITEMS));
                    }
                    items.push(
                        TransactWriteItem::builder()
                            .put(
                                built(
                                    Put::builder()
                                        .table_name(table)
                                        .set_item(Some(attrs))
                                        .build(),
                                )
                                .map_err(Lost::Failed)?,
                            )
                            .build(),
                    );
                    let mut change = Attrs::new();
                    change.insert("K".into(), s(item.key.as_str()));
                    change.insert("T".into(), s("put"));
                    if !item.value.is_empty() {
                        change.insert("V".into(), AttributeValue::B(Blob::new(item.value.clone())));
                    }
                    if let Some(expires) = item.expires {
                        change.insert("E".into(), n(to_unix_millis(expires)));
                    }
                    (change, item.key.as_str().len() + item.value.len() + 40)
                }
                Write::Delete(key) => {
                    items.push(
                        TransactWriteItem::builder()
                            .delete(
                                built(
                                    Delete::builder()
                                        .table_name(table)
                                        .key(HASH_KEY, s(ITEMS))
                                        .key(SORT_KEY, s(key.as_str()))
                                        .build(),
                                )
                                .map_err(Lost::Failed)?,
                            )
                            .build(),
                    );
                    let mut change = Attrs::new();
                    change.insert("K".into(), s(key.as_str()));
                    change.insert("T".into(), s("delete"));
                    (change, key.as_str().len() + 30)
                }
            };
            match chunks.last_mut() {
                Some((changes, bytes)) if *bytes + size <= CHUNK_BYTES => {
                    changes.push(AttributeValue::M(change));
                    *bytes += size;
                }
                _ => chunks.push((vec![AttributeValue::M(change)], size)),
            }
        }
        let total = chunks.len();
        let keep_until = now
            .saturating_add(
                i64::try_from(self.inner.options.change_retention.as_millis()).unwrap_or(i64::MAX),
            )
            .saturating_add(3_600_000);
        for (index, (changes, _)) in chunks.into_iter().enumerate() {
            let mut attrs = Attrs::new();
            attrs.insert(HASH_KEY.into(), s(LOG));
            attrs.insert(SORT_KEY.into(), s(&log_key(revision, index)));
            attrs.insert(REVISION.into(), n(revision));
            attrs.insert(CHUNKS.into(), n(i64::try_from(total).unwrap_or(i64::MAX)));
            attrs.insert(AT.into(), n(now));
            attrs.insert(EXPIRES_TTL.into(), n(keep_until / 1000));
            attrs.insert(CHANGES.into(), AttributeValue::L(changes));
            items.push(
                TransactWriteItem::builder()
                    .put(
                        built(
                            Put::builder()
                                .table_name(table)
                                .set_item(Some(attrs))
                                .build(),
                        )
                        .map_err(Lost::Failed)?,
                    )
                    .build(),
            );
        }
        if items.len() > MAX_TRANSACTION {
            return Err(Lost::Failed(BackendError::InvalidArgument(format!(
                "this write touches {} keys; DynamoDB transactions hold at most {} writes, \
                 so an atomic write may touch about {DELETE_BATCH} keys",
                writes.len(),
                MAX_TRANSACTION
            ))));
        }
        let result = self
            .inner
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Revision(revision)),
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    err.as_service_error()
                {
                    let reasons: Vec<&str> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                        .filter(|code| *code != "None")
                        .collect();
                    let raced = reasons.is_empty()
                        || reasons.iter().all(|code| {
                            matches!(*code, "ConditionalCheckFailed" | "TransactionConflict")
                        });
                    if raced {
                        return Err(Lost::Race);
                    }
                    return Err(Lost::Failed(self.internal(format_args!(
                        "DynamoDB cancelled the write transaction: {}",
                        reasons.join(", ")
                    ))));
                }
                let code = err.as_service_error().and_then(|e| e.code());
                if code == Some("TransactionConflictException") {
                    return Err(Lost::Race);
                }
                Err(Lost::Failed(self.classify(&err)))
            }
        }
    }

    /// A write of one key decided on its stored item (`None` if missing or expired).
    async fn write_key<F>(&self, key: &Key, decide: F) -> Result<Revision>
    where
        F: Fn(Option<&Item>) -> Result<Write> + Send + Sync,
    {
        let decide = |live: &Live| {
            let current = live
                .get(key)
                .filter(|item| !is_expired(item.expires, SystemTime::now()));
            Ok(vec![decide(current)?])
        };
        let (revision, _) = self.transact(std::slice::from_ref(key), &decide).await?;
        revision.ok_or_else(|| self.internal("a single-key write wrote nothing"))
    }

    /// Keys stored in `range` (live or expired), in key order, at most `limit`.
    async fn query_items(
        &self,
        range: &KeyRange,
        limit: Option<usize>,
        with_expired: bool,
    ) -> Result<Vec<Item>> {
        let mut found = Vec::new();
        let mut start: Option<Attrs> = None;
        let end = match range {
            KeyRange::Prefix(_) => None,
            KeyRange::Between { end, .. } => Some(end.clone()),
        };
        loop {
            let mut request = self
                .inner
                .client
                .query()
                .table_name(self.table())
                .consistent_read(true)
                .expression_attribute_names("#h", HASH_KEY)
                .expression_attribute_names("#s", SORT_KEY)
                .expression_attribute_values(":h", s(ITEMS))
                .set_exclusive_start_key(start.take());
            request = match range {
                KeyRange::Prefix(prefix) => request
                    .key_condition_expression("#h = :h AND begins_with(#s, :p)")
                    .expression_attribute_values(":p", s(prefix.as_str())),
                KeyRange::Between { start, end } => request
                    .key_condition_expression("#h = :h AND #s BETWEEN :a AND :b")
                    .expression_attribute_values(":a", s(start.as_str()))
                    .expression_attribute_values(":b", s(end.as_str())),
            };
            let output = request.send().await.map_err(|err| self.classify(&err))?;
            let now = SystemTime::now();
            for attrs in output.items() {
                let item = self.item_from(attrs)?;
                if end.as_ref() == Some(&item.key) {
                    continue;
                }
                if !with_expired && is_expired(item.expires, now) {
                    continue;
                }
                found.push(item);
                if limit.is_some_and(|limit| found.len() >= limit) {
                    return Ok(found);
                }
            }
            match output.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(found),
            }
        }
    }

    /// Deletes the stored items of `keys` (live or expired, as `keep` says), in batches
    /// of [`DELETE_BATCH`]; how many live items were deleted.
    async fn delete_keys(&self, keys: Vec<Key>, only_expired: bool) -> Result<u64> {
        let mut deleted = 0;
        for batch in keys.chunks(DELETE_BATCH) {
            let decide = |live: &Live| {
                let now = SystemTime::now();
                Ok(batch
                    .iter()
                    .filter(|key| {
                        live.get(*key)
                            .is_some_and(|item| !only_expired || is_expired(item.expires, now))
                    })
                    .map(|key| Write::Delete(key.clone()))
                    .collect())
            };
            deleted += self.transact(batch, &decide).await?.1;
        }
        Ok(deleted)
    }

    /// Deletes expired items (logging each as a delete) and, now and then, prunes the log.
    async fn sweep(&self, prune: bool) -> Result<()> {
        let now = to_unix_millis(SystemTime::now());
        let output = self
            .inner
            .client
            .query()
            .table_name(self.table())
            .index_name(EXPIRY_INDEX)
            .key_condition_expression("#e = :e AND #x <= :now")
            .expression_attribute_names("#e", EXPIRING)
            .expression_attribute_names("#x", EXPIRES_MS)
            .expression_attribute_values(":e", s(ITEMS))
            .expression_attribute_values(":now", n(now))
            .limit(i32::try_from(DELETE_BATCH).unwrap_or(90))
            .send()
            .await
            .map_err(|err| self.classify(&err))?;
        let keys: Vec<Key> = output
            .items()
            .iter()
            .filter_map(|attrs| attrs.get(SORT_KEY)?.as_s().ok())
            .filter_map(|text| Key::new(text.clone()).ok())
            .collect();
        if !keys.is_empty() {
            self.delete_keys(keys, true).await?;
        }
        if prune {
            self.prune().await?;
        }
        Ok(())
    }

    /// Deletes log entries older than the retention, after raising the prune mark.
    async fn prune(&self) -> Result<()> {
        let retention =
            i64::try_from(self.inner.options.change_retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = to_unix_millis(SystemTime::now()).saturating_sub(retention);
        let output = self
            .inner
            .client
            .query()
            .table_name(self.table())
            .consistent_read(true)
            .key_condition_expression("#h = :h")
            .expression_attribute_names("#h", HASH_KEY)
            .expression_attribute_values(":h", s(LOG))
            .limit(100)
            .send()
            .await
            .map_err(|err| self.classify(&err))?;
        // The newest revision's entries stay, so that a watcher behind finds a later entry
        // than the one it needs and learns from the prune mark that it fell behind.
        let counter = self.read_meta().await?.counter;
        let mut old = Vec::new();
        let mut through = 0;
        for attrs in output.items() {
            let at = self.number(attrs, AT, "a log entry's time")?;
            let revision = self.number(attrs, REVISION, "a log entry's revision")?;
            if at >= cutoff || revision >= counter {
                break;
            }
            through = through.max(revision);
            if let Some(sort) = attrs.get(SORT_KEY).and_then(|v| v.as_s().ok()) {
                old.push(sort.clone());
            }
        }
        if old.is_empty() {
            return Ok(());
        }
        // The mark first: a watcher that finds entries missing learns why.
        let raised = self
            .inner
            .client
            .update_item()
            .table_name(self.table())
            .key(HASH_KEY, s(META))
            .key(SORT_KEY, s(META_COUNTER))
            .update_expression("SET #p = :t")
            .condition_expression("#p < :t")
            .expression_attribute_names("#p", PRUNED)
            .expression_attribute_values(":t", n(through))
            .send()
            .await;
        if let Err(err) = raised
            && !err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception())
        {
            return Err(self.classify(&err));
        }
        for sort in old {
            self.inner
                .client
                .delete_item()
                .table_name(self.table())
                .key(HASH_KEY, s(LOG))
                .key(SORT_KEY, s(&sort))
                .send()
                .await
                .map_err(|err| self.classify(&err))?;
        }
        Ok(())
    }

    /// Log entries from revision `from` on, in order.
    async fn log_from(&self, from: i64) -> Result<(Vec<LogEntry>, bool)> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let output = self
            .inner
            .client
            .query()
            .table_name(self.table())
            .consistent_read(true)
            .key_condition_expression("#h = :h AND #s >= :from")
            .expression_attribute_names("#h", HASH_KEY)
            .expression_attribute_names("#s", SORT_KEY)
            .expression_attribute_values(":h", s(LOG))
            .expression_attribute_values(":from", s(&format!("{from:020}")))
            .limit(WATCH_BATCH)
            .send()
            .await
            .map_err(|err| self.classify(&err))?;
        let full = output
            .last_evaluated_key
            .as_ref()
            .is_some_and(|k| !k.is_empty());
        let mut entries = Vec::with_capacity(output.items().len());
        for attrs in output.items() {
            entries.push(self.log_entry(attrs)?);
        }
        Ok((entries, full))
    }

    fn log_entry(&self, attrs: &Attrs) -> Result<LogEntry> {
        let revision = self.number(attrs, REVISION, "a log entry's revision")?;
        let chunks = self.number(attrs, CHUNKS, "a log entry's chunk count")?;
        let changes = attrs
            .get(CHANGES)
            .and_then(|v| v.as_l().ok())
            .ok_or_else(|| self.corrupt("a log entry has no list of changes"))?;
        let mut events = Vec::with_capacity(changes.len());
        for change in changes {
            let change = change
                .as_m()
                .map_err(|_| self.corrupt("a log entry's change is not a map"))?;
            let key = change
                .get("K")
                .and_then(|v| v.as_s().ok())
                .and_then(|text| Key::new(text.clone()).ok())
                .ok_or_else(|| self.corrupt("a log entry's key is not a Jumpgate key"))?;
            let kind = change
                .get("T")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str);
            let event = match kind {
                Some("put") => Event::Put(Item {
                    key,
                    value: match change.get("V") {
                        Some(AttributeValue::B(blob)) => blob.as_ref().to_vec(),
                        _ => Vec::new(),
                    },
                    expires: change
                        .get("E")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|text| text.parse().ok())
                        .map(from_unix_millis),
                    revision: Revision(revision),
                }),
                Some("delete") => Event::Delete {
                    key,
                    revision: Revision(revision),
                },
                _ => return Err(self.corrupt("a log entry's change has an unknown kind")),
            };
            events.push(event);
        }
        Ok(LogEntry {
            revision,
            chunks,
            events,
        })
    }
}

struct Meta {
    counter: i64,
    pruned: i64,
    layout: i64,
}

struct LogEntry {
    revision: i64,
    chunks: i64,
    events: Vec<Event>,
}

/// The sort key of a log entry: revision, then chunk, both zero-padded so that string
/// order is numeric order.
fn log_key(revision: i64, chunk: usize) -> String {
    format!("{revision:020}.{chunk:04}")
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(number: i64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

fn built<T>(result: std::result::Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T> {
    result.map_err(|err| BackendError::Internal {
        backend: BACKEND,
        detail: format!("building a DynamoDB request: {err}"),
    })
}

fn closed() -> BackendError {
    BackendError::Unavailable {
        backend: BACKEND,
        detail: "the backend was closed".to_string(),
    }
}

fn credentials_error(place: &str, access_key_id: &str, detail: &str) -> BackendError {
    BackendError::Internal {
        backend: BACKEND,
        detail: format!(
            "{place} refused the credentials of access key id {access_key_id} ({detail}); check \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the AWS profile, or the instance role, \
             and that it may use this table"
        ),
    }
}

/// Resolves the credentials once, so that a start without any fails clearly; returns the
/// access key id for messages.
async fn resolve_credentials(
    sdk: &aws_config::SdkConfig,
    place: &str,
    within: Duration,
) -> Result<String> {
    let no_credentials = |detail: String| BackendError::Internal {
        backend: BACKEND,
        detail: format!(
            "{place}: no AWS credentials found ({detail}); set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, an AWS profile (AWS_PROFILE), or run with an instance or \
             task role"
        ),
    };
    let Some(provider) = sdk.credentials_provider() else {
        return Err(no_credentials(
            "no credential provider configured".to_string(),
        ));
    };
    // Instance metadata may take a few attempts to answer (or to fail, off AWS).
    match tokio::time::timeout(
        within.max(Duration::from_secs(5)),
        provider.provide_credentials(),
    )
    .await
    {
        Ok(Ok(credentials)) => Ok(credentials.access_key_id().to_owned()),
        Ok(Err(err)) => Err(no_credentials(DisplayErrorContext(&err).to_string())),
        Err(_) => Err(no_credentials(format!(
            "the credential chain did not answer within {within:?}"
        ))),
    }
}

fn spawn_sweeper(
    inner: Weak<Inner>,
    interval: Duration,
    prune_every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = Instant::now();
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            let backend = DynamoBackend { inner };
            let prune = last_prune.elapsed() >= prune_every;
            if prune {
                last_prune = Instant::now();
            }
            if let Err(err) = backend.sweep(prune).await {
                tracing::warn!(%err, "sweeping expired DynamoDB items failed; will retry");
            }
        }
    })
}

#[async_trait]
impl Backend for DynamoBackend {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn get(&self, key: &Key) -> Result<Item> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let output = self
            .inner
            .client
            .get_item()
            .table_name(self.table())
            .key(HASH_KEY, s(ITEMS))
            .key(SORT_KEY, s(key.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| self.classify(&err))?;
        match output.item {
            Some(attrs) => {
                let item = self.item_from(&attrs)?;
                if is_expired(item.expires, SystemTime::now()) {
                    Err(BackendError::NotFound { key: key.clone() })
                } else {
                    Ok(item)
                }
            }
            None => Err(BackendError::NotFound { key: key.clone() }),
        }
    }

    async fn put(&self, item: NewItem) -> Result<Revision> {
        check_size(&item)?;
        let decide = |_: &Live| Ok(vec![Write::Put(item.clone())]);
        let (revision, _) = self.transact(&[], &decide).await?;
        revision.ok_or_else(|| self.internal("a put wrote nothing"))
    }

    async fn create(&self, item: NewItem) -> Result<Revision> {
        check_size(&item)?;
        self.write_key(&item.key, |live| match live {
            Some(_) => Err(BackendError::AlreadyExists {
                key: item.key.clone(),
            }),
            None => Ok(Write::Put(item.clone())),
        })
        .await
    }

    async fn update(&self, item: NewItem) -> Result<Revision> {
        check_size(&item)?;
        self.write_key(&item.key, |live| match live {
            None => Err(BackendError::NotFound {
                key: item.key.clone(),
            }),
            Some(_) => Ok(Write::Put(item.clone())),
        })
        .await
    }

    async fn compare_and_swap(&self, expected: &[u8], item: NewItem) -> Result<Revision> {
        check_size(&item)?;
        self.write_key(&item.key, |live| match live {
            None => Err(BackendError::NotFound {
                key: item.key.clone(),
            }),
            Some(current) if current.value != expected => Err(BackendError::CompareFailed {
                key: item.key.clone(),
            }),
            Some(_) => Ok(Write::Put(item.clone())),
        })
        .await
    }

    async fn conditional_update(&self, expected: Revision, item: NewItem) -> Result<Revision> {
        check_size(&item)?;
        self.write_key(&item.key, |live| match live {
            None => Err(BackendError::NotFound {
                key: item.key.clone(),
            }),
            Some(current) if current.revision != expected => Err(BackendError::CompareFailed {
                key: item.key.clone(),
            }),
            Some(_) => Ok(Write::Put(item.clone())),
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.write_key(key, |live| match live {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(_) => Ok(Write::Delete(key.clone())),
        })
        .await
        .map(|_| ())
    }

    async fn conditional_delete(&self, key: &Key, expected: Revision) -> Result<()> {
        self.write_key(key, |live| match live {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(current) if current.revision != expected => {
                Err(BackendError::CompareFailed { key: key.clone() })
            }
            Some(_) => Ok(Write::Delete(key.clone())),
        })
        .await
        .map(|_| ())
    }

    async fn get_range(&self, range: &KeyRange, limit: Option<usize>) -> Result<Vec<Item>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        self.query_items(range, limit, false).await
    }

    async fn delete_range(&self, range: &KeyRange) -> Result<u64> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let keys = self
            .query_items(range, None, true)
            .await?
            .into_iter()
            .map(|item| item.key)
            .collect();
        self.delete_keys(keys, false).await
    }

    async fn keep_alive(&self, key: &Key, expires: SystemTime) -> Result<Revision> {
        self.write_key(key, |live| match live {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(current) => Ok(Write::Put(NewItem {
                key: key.clone(),
                value: current.value.clone(),
                expires: Some(expires),
            })),
        })
        .await
    }

    async fn atomic_write(
        &self,
        conditions: Vec<Condition>,
        actions: Vec<Action>,
    ) -> Result<Revision> {
        // One write per key (a transaction may not touch an item twice): the last wins.
        let mut writes: Vec<Write> = Vec::with_capacity(actions.len());
        for action in actions {
            let write = match action {
                Action::Put(item) => {
                    check_size(&item)?;
                    Write::Put(item)
                }
                Action::Delete(key) => Write::Delete(key),
            };
            let key = match &write {
                Write::Put(item) => item.key.clone(),
                Write::Delete(key) => key.clone(),
            };
            writes.retain(|w| match w {
                Write::Put(item) => item.key != key,
                Write::Delete(k) => *k != key,
            });
            writes.push(write);
        }
        let mut keys: Vec<Key> = conditions.iter().map(|c| c.key().clone()).collect();
        keys.extend(writes.iter().filter_map(|w| match w {
            Write::Delete(key) => Some(key.clone()),
            Write::Put(_) => None,
        }));
        keys.sort();
        keys.dedup();
        if keys.len() >= MAX_TRANSACTION {
            return Err(BackendError::InvalidArgument(format!(
                "an atomic write on DynamoDB may look at most {} keys",
                MAX_TRANSACTION - 1
            )));
        }
        let decide = |live: &Live| {
            let now = SystemTime::now();
            for (index, condition) in conditions.iter().enumerate() {
                let current = live
                    .get(condition.key())
                    .filter(|item| !is_expired(item.expires, now))
                    .map(|item| item.revision);
                if !condition.holds(current) {
                    return Err(BackendError::ConditionFailed {
                        index,
                        condition: format!("{condition:?}"),
                    });
                }
            }
            Ok(writes
                .iter()
                .filter(|w| match w {
                    // Deleting a key that is not stored changes nothing.
                    Write::Delete(key) => live.contains_key(key),
                    Write::Put(_) => true,
                })
                .cloned()
                .collect())
        };
        let (revision, _) = self.transact(&keys, &decide).await?;
        match revision {
            Some(revision) => Ok(revision),
            // Every condition held and there was nothing to change: the current revision.
            None => Ok(Revision(self.read_meta().await?.counter)),
        }
    }

    async fn watch(&self, prefixes: Vec<Key>) -> Result<Watcher> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let mut wake = self.inner.wake.subscribe();
        wake.borrow_and_update();
        let start = self.read_meta().await?.counter;
        let (tx, rx) = mpsc::channel(self.inner.options.watch_buffer.max(2));
        let overflowed = Arc::new(AtomicBool::new(false));
        // Room is guaranteed: the channel is new and holds at least two.
        let _ = tx.try_send(Ok(Event::Ready));
        let feeder = WatchFeeder {
            backend: self.clone(),
            prefixes,
            tx,
            overflowed: Arc::clone(&overflowed),
            cursor: start,
            wake,
        };
        let task = tokio::spawn(feeder.run());
        Ok(Watcher::from_channel(rx, overflowed, task))
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        abort_tasks(&self.inner.tasks);
        Ok(())
    }
}

fn check_size(item: &NewItem) -> Result<()> {
    if item.value.len() + item.key.as_str().len() > MAX_VALUE {
        return Err(BackendError::InvalidArgument(format!(
            "the value of {} is {} bytes; a DynamoDB item holds at most 400 KB, so values \
             are limited to {MAX_VALUE} bytes",
            item.key,
            item.value.len()
        )));
    }
    Ok(())
}

/// Reads the log after its cursor and hands matching events to one subscriber.
struct WatchFeeder {
    backend: DynamoBackend,
    prefixes: Vec<Key>,
    tx: mpsc::Sender<Result<Event, WatchError>>,
    overflowed: Arc<AtomicBool>,
    /// The last revision delivered (or skipped).
    cursor: i64,
    wake: watch::Receiver<u64>,
}

impl WatchFeeder {
    async fn run(mut self) {
        let mut delay = Duration::from_millis(100);
        let mut gap_since: Option<Instant> = None;
        let mut meta_checked = Instant::now();
        loop {
            self.wake.borrow_and_update();
            let mut again = false;
            match self.backend.log_from(self.cursor + 1).await {
                Ok((entries, full)) => {
                    delay = Duration::from_millis(100);
                    let mut position = 0;
                    let mut gap = false;
                    while let Some(first) = entries.get(position) {
                        let revision = first.revision;
                        let count = entries
                            .iter()
                            .skip(position)
                            .take_while(|e| e.revision == revision)
                            .count();
                        let complete = i64::try_from(count).is_ok_and(|c| c == first.chunks);
                        if revision != self.cursor + 1 || !complete {
                            // A page that ends mid-revision is read on from there.
                            let cut_by_page = full && position + count == entries.len();
                            gap = !cut_by_page || position == 0;
                            again = cut_by_page;
                            break;
                        }
                        for entry in entries.iter().skip(position).take(count) {
                            for event in &entry.events {
                                if !self.wanted(event) {
                                    continue;
                                }
                                match self.tx.try_send(Ok(event.clone())) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => {
                                        self.overflowed.store(true, Ordering::Release);
                                        return;
                                    }
                                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                                }
                            }
                        }
                        self.cursor = revision;
                        position += count;
                        gap_since = None;
                    }
                    if full && !gap {
                        again = true;
                    }
                    // Nothing new in the log: now and then make sure the counter agrees, or
                    // entries this watcher needed are gone (pruned, or removed by DynamoDB's
                    // TTL after a long outage) and it would wait forever.
                    if entries.is_empty() && meta_checked.elapsed() >= META_CHECK {
                        meta_checked = Instant::now();
                        match self.backend.read_meta().await {
                            Ok(meta) => gap = meta.counter > self.cursor,
                            Err(err) if err.is_retryable() => {}
                            Err(err) => {
                                self.finish(Err(WatchError::Closed(err.to_string())));
                                return;
                            }
                        }
                    }
                    if gap {
                        match self.on_gap(&mut gap_since).await {
                            Ok(()) => again = true,
                            Err(outcome) => {
                                self.finish(Err(outcome));
                                return;
                            }
                        }
                    }
                }
                Err(err) if err.is_retryable() => {
                    if self.backend.inner.closed.load(Ordering::Acquire) {
                        self.finish(Err(WatchError::Closed("backend closed".to_string())));
                        return;
                    }
                    tracing::warn!(%err, retry_in = ?delay, "DynamoDB watch lost; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(jitter(delay)) => {}
                        () = self.tx.closed() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(err) => {
                    self.finish(Err(WatchError::Closed(err.to_string())));
                    return;
                }
            }
            if again {
                continue;
            }
            let poll = self.backend.inner.options.poll_interval;
            tokio::select! {
                _ = self.wake.changed() => {}
                () = tokio::time::sleep(poll) => {}
                () = self.tx.closed() => return,
            }
        }
    }

    /// The next revision is missing or incomplete: pruned (the watcher fell behind), or a
    /// transaction not yet visible in full to this query (wait a moment).
    async fn on_gap(&self, since: &mut Option<Instant>) -> std::result::Result<(), WatchError> {
        match self.backend.read_meta().await {
            Ok(meta) if meta.pruned > self.cursor => return Err(WatchError::FellBehind),
            Ok(_) => {}
            Err(err) if err.is_retryable() => {}
            Err(err) => return Err(WatchError::Closed(err.to_string())),
        }
        let started = *since.get_or_insert_with(Instant::now);
        if started.elapsed() > GAP_PATIENCE {
            tracing::warn!(
                revision = self.cursor + 1,
                "DynamoDB change log has a lasting gap; \
                the watcher must re-read"
            );
            return Err(WatchError::FellBehind);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }

    fn wanted(&self, event: &Event) -> bool {
        match event.key() {
            Some(key) => {
                self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p))
            }
            None => true,
        }
    }

    fn finish(&self, outcome: Result<Event, WatchError>) {
        if self.tx.try_send(outcome).is_err() {
            // Full: the subscriber will learn it fell behind once it drains the buffer.
            self.overflowed.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_numerically() {
        assert!(log_key(9, 0) < log_key(10, 0));
        assert!(log_key(10, 1) < log_key(11, 0));
        assert!(format!("{:020}", 10) < log_key(10, 0));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let mut options = DynamoOptions::new("us-east-1", "jumpgate");
        options.credentials = Some(DynamoCredentials {
            access_key_id: "AKIDEXAMPLE".to_string(),
            secret_access_key: "wJalrXUtnFEMI-secret".to_string(),
        });
        let debug = format!("{options:?}");
        assert!(debug.contains("AKIDEXAMPLE"), "{debug}");
        assert!(!debug.contains("wJalrXUtnFEMI"), "{debug}");
    }
}
