//! Recordings in an S3-compatible object store (`audit_sessions_uri: s3://bucket/prefix`).
//!
//! # Layout
//! Under the configured prefix, for each session id `SID`:
//! - `SID/parts/OFFSET-HASH` (OFFSET as 20 decimal digits, HASH the first 16 hex digits of
//!   the bytes' SHA-256): the bytes `[OFFSET, OFFSET + size)` of a recording still being
//!   uploaded, one small object per accepted part;
//! - `SID/state`: absent while the recording grows; `sealing` while a `complete` is deciding
//!   the final length; `complete LEN` once it is decided;
//! - `SID.cast`: the whole completed recording, one object, read with one GET.
//!
//! # Why
//! [`RecordingStore::append_part`] promises that the bytes are durable when it returns, and
//! parts are at most 1 MiB, while S3 multipart uploads need parts of at least 5 MiB (except the
//! last) and are invisible until completed. So each accepted part is a small object of its
//! own — durable and readable at once, from any auth server — and the whole recording becomes
//! one object only when it is complete. No state lives in one auth process; every decision
//! that needs serializing is a conditional write (`If-None-Match` / `If-Match` on PutObject, which S3
//! has since 2024 and MinIO, Ceph RGW and the test server `s3s-fs` implement).
//!
//! - **Parts cover the recording without gaps.** A part object holds the new bytes of an
//!   accepted part and is written at the end of what its writer listed, so what the parts
//!   cover is always `[0, stored length)`. Its key names its content: a retried part is the
//!   same object again (PUT is idempotent), and two writers never overwrite each other's
//!   object, so no part is ever torn or replaced. Bytes a part shares with stored ones are
//!   compared first ([`RecordingError::Conflict`] if they differ). Two auth servers that
//!   append the same recording at once (a node's old request still in flight after it
//!   reconnected elsewhere) may store overlapping parts with the same bytes; reads take each
//!   byte once. Two *different* sources racing at the same instant are not detected (each
//!   compared before the other wrote); a node never does that, its session id is its own.
//!   The stored length is found by listing from 1 MiB before the offset (the part holding
//!   the byte before it starts there or later), so an append costs the same at the start
//!   and at the end of a long recording.
//! - **Completing is a two-step decision.** `complete` writes `state = sealing`
//!   (`If-None-Match`), lists the parts, then replaces it with `complete LEN`
//!   (`If-Match` on the sealing object's ETag), so the length is decided exactly once. An
//!   append checks `state` *after* writing its part: if there was none yet, its part was
//!   written before the seal, hence before the listing, and is inside `LEN`; if there was
//!   one, it finishes the decision itself and answers from `LEN` (its part is in the
//!   recording, or it gets [`RecordingError::AlreadyComplete`] and the stray part is
//!   removed). Then the parts are copied into `SID.cast` (one PUT up to 8 MiB, else a
//!   multipart upload of 8 MiB parts) and deleted.
//! - **Crashes.** Every step leaves a state the next call from any auth server resolves: a
//!   part written but not acknowledged is simply part of the recording (the node resends the
//!   same bytes, which are acknowledged); a `sealing` state is decided by the next
//!   `append_part`, `complete` or `read`; a `complete LEN` without `SID.cast` is assembled by
//!   the next `complete` and read from its parts meanwhile; parts left beside `SID.cast` are
//!   ignored (and deleted by the next `complete`). Reads prefer `SID.cast`; a part that
//!   disappears under a read (assembly finished) restarts the read from `SID.cast`. An
//!   aborted multipart upload is never referenced; a bucket lifecycle rule
//!   `AbortIncompleteMultipartUpload` cleans those up.
//!
//! # Costs
//! - Per accepted part: one LIST, one PUT and one HEAD (three requests) and a SHA-256 of the
//!   part; a retry of stored bytes adds a ranged GET to compare them.
//! - Per completed recording: a LIST per 1000 parts, a GET per part, one PUT (or a
//!   multipart upload of `size / 8 MiB` parts), one DELETE per part, two small PUTs for
//!   `state`. Every byte is written twice (part, then `SID.cast`) and passes through the auth
//!   server once more; during the upload it is stored once, after completion once (the
//!   parts are deleted); `SID/state` (a few bytes) stays.
//! - Reading a recording in progress costs a LIST per 1000 parts and a GET per part; a
//!   completed one is one GET.
//!
//! Credentials come from the standard AWS chain (environment, profile, web identity, ECS,
//! instance metadata) and are never logged; errors name the endpoint, the bucket and the
//! access key id (not secret) so an operator can tell which credentials were refused.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ObjectCannedAcl, ServerSideEncryption,
};
use tracing::{debug, info, warn};

use super::store::{MAX_PART_LEN, RecordingInfo, RecordingStore};
use super::{DEFAULT_MAX_RECORDING_LEN, RecordingError, SessionId};
use crate::BoxFuture;

/// Completed recordings up to this size are one PUT; bigger ones a multipart upload with
/// parts of this size (S3 wants at least 5 MiB per part but the last).
const ASSEMBLY_PART_LEN: usize = 8 * 1024 * 1024;

/// How often one call retries after losing a race to another writer before giving up.
const MAX_RACES: usize = 16;

/// Where and how to store recordings in S3. [`S3Options::new`] takes the bucket; the rest is
/// optional and mirrors the `s3://` URI's query parameters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (empty: the bucket's root).
    pub prefix: String,
    /// The region to sign for; `None`: from the AWS chain (environment, profile), else
    /// `us-east-1`.
    pub region: Option<String>,
    /// A custom endpoint URL (MinIO, Ceph, Garage, ...), e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style.
    pub path_style: bool,
    /// AWS FIPS endpoints.
    pub use_fips: bool,
    /// Server-side encryption (`AES256`, `aws:kms`, `aws:kms:dsse`), sent on every write.
    pub sse: Option<String>,
    /// The KMS key for `aws:kms`.
    pub sse_kms_key: Option<String>,
    /// A canned ACL for every object written (e.g. `bucket-owner-full-control`).
    pub acl: Option<String>,
    /// Credentials to use instead of the AWS chain.
    pub credentials: Option<S3Credentials>,
    /// How long to wait for a TCP connection, and for one whole request.
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Recordings may grow to this many bytes.
    pub max_len: u64,
}

impl S3Options {
    pub fn new(bucket: impl Into<String>) -> S3Options {
        S3Options {
            bucket: bucket.into(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            path_style: false,
            use_fips: false,
            sse: None,
            sse_kms_key: None,
            acl: None,
            credentials: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            max_len: DEFAULT_MAX_RECORDING_LEN,
        }
    }
}

/// An access key pair given explicitly (tests, or configs that name one). Its `Debug` hides
/// the secret.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The recordings store in S3; see the module docs for the layout and the protocol. Cheap to
/// clone; any number of instances (auth servers) may share one bucket and prefix.
#[derive(Debug, Clone)]
pub struct S3RecordingStore {
    client: Client,
    bucket: String,
    /// Empty, or ending in `/`.
    prefix: String,
    /// For error messages: where requests go and with which key id.
    endpoint: String,
    access_key_id: String,
    sse: Option<ServerSideEncryption>,
    sse_kms_key: Option<String>,
    acl: Option<ObjectCannedAcl>,
    max_len: u64,
}

/// One listed object.
#[derive(Debug, Clone)]
struct Listed {
    key: String,
    size: u64,
    modified: SystemTime,
}

/// What the `state` object says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Sealing { etag: String },
    Complete { len: u64 },
}

/// How a request failed, for the callers that expect some failures.
#[derive(Debug)]
enum Failed {
    NotFound,
    Precondition,
    Range,
    Error(RecordingError),
}

impl From<RecordingError> for Failed {
    fn from(err: RecordingError) -> Failed {
        Failed::Error(err)
    }
}

/// The parts of one recording, as listed.
#[derive(Debug, Default)]
struct Parts {
    /// (offset, key, size), in key order: by offset, then by content hash.
    tiles: Vec<(u64, String, u64)>,
    state: bool,
    modified: Option<SystemTime>,
}

impl Parts {
    /// Where the bytes covered by the listed parts, from the first one on, start and end.
    /// Parts never leave a gap (each is written at the end of what its writer saw, and what
    /// is covered only grows), so this is the recording's stored length when the listing
    /// starts at or before the part holding the byte before an offset.
    fn chain(&self) -> Option<(u64, u64)> {
        let (start, _, _) = self.tiles.first()?;
        let mut end = *start;
        for (offset, _, size) in &self.tiles {
            if *offset > end {
                break;
            }
            end = end.max(offset.saturating_add(*size));
        }
        Some((*start, end))
    }

    fn end(&self) -> u64 {
        self.chain().map_or(0, |(_, end)| end)
    }
}

impl S3RecordingStore {
    /// Connects to the bucket (one HEAD request, so that a wrong endpoint, bucket or secret is
    /// reported now, naming what is wrong, rather than at the first recording).
    pub async fn open(options: S3Options) -> Result<S3RecordingStore, RecordingError> {
        let S3Options {
            bucket,
            prefix,
            region,
            endpoint,
            path_style,
            use_fips,
            sse,
            sse_kms_key,
            acl,
            credentials,
            connect_timeout,
            request_timeout,
            max_len,
        } = options;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(connect_timeout)
                    .operation_attempt_timeout(request_timeout)
                    .operation_timeout(request_timeout.saturating_mul(2))
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(2)),
            );
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(creds) = credentials {
            loader = loader.credentials_provider(Credentials::new(
                creds.access_key_id,
                creds.secret_access_key,
                None,
                None,
                "jumpgate-config",
            ));
        }
        let sdk = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&sdk).use_fips(use_fips);
        if sdk.region().is_none() {
            config = config.region(Region::from_static("us-east-1"));
        }
        if let Some(url) = &endpoint {
            config = config.endpoint_url(url.clone());
        }
        config = config.force_path_style(path_style);
        let shown_endpoint = endpoint.clone().unwrap_or_else(|| {
            let region = sdk.region().map_or("us-east-1", |r| r.as_ref());
            format!("https://s3.{region}.amazonaws.com")
        });
        let access_key_id = match sdk.credentials_provider() {
            Some(provider) => access_key_id(&provider, &shown_endpoint).await?,
            None => {
                return Err(RecordingError::StoreConfig {
                    reason: format!(
                        "no AWS credentials for S3 at {shown_endpoint}: set AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY, a profile, or an instance role"
                    ),
                });
            }
        };
        let prefix = prefix.trim_matches('/').to_string();
        let store = S3RecordingStore {
            client: Client::from_conf(config.build()),
            bucket,
            prefix: if prefix.is_empty() {
                prefix
            } else {
                format!("{prefix}/")
            },
            endpoint: shown_endpoint,
            access_key_id,
            sse: sse.map(|s| ServerSideEncryption::from(s.as_str())),
            sse_kms_key,
            acl: acl.map(|a| ObjectCannedAcl::from(a.as_str())),
            max_len,
        };
        store
            .client
            .head_bucket()
            .bucket(&store.bucket)
            .send()
            .await
            .map_err(|err| match store.failed("HeadBucket", "", err) {
                Failed::NotFound => RecordingError::StoreConfig {
                    reason: format!(
                        "S3 bucket {:?} does not exist at {}; create it first",
                        store.bucket, store.endpoint
                    ),
                },
                Failed::Error(err) => err,
                Failed::Precondition | Failed::Range => {
                    store.store_error("HeadBucket", "", "unexpected answer")
                }
            })?;
        info!(
            endpoint = %store.endpoint,
            bucket = %store.bucket,
            prefix = %store.prefix,
            access_key_id = %store.access_key_id,
            "session recordings are stored in S3"
        );
        Ok(store)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key of a completed recording.
    pub fn cast_key(&self, session_id: &SessionId) -> String {
        format!("{}{session_id}.cast", self.prefix)
    }

    fn dir_key(&self, session_id: &SessionId) -> String {
        format!("{}{session_id}/", self.prefix)
    }

    fn parts_key(&self, session_id: &SessionId) -> String {
        format!("{}{session_id}/parts/", self.prefix)
    }

    /// The key of the part holding `bytes` at `offset`: named by its content, so the same
    /// part stored twice is one object, and different bytes never overwrite each other.
    pub fn part_key(&self, session_id: &SessionId, offset: u64, bytes: &[u8]) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(bytes);
        let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{}{session_id}/parts/{offset:020}-{hash}", self.prefix)
    }

    fn state_key(&self, session_id: &SessionId) -> String {
        format!("{}{session_id}/state", self.prefix)
    }

    fn store_error(&self, operation: &'static str, key: &str, reason: &str) -> RecordingError {
        RecordingError::Store {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            detail: format!("{operation} {key}: {reason}"),
        }
    }

    /// Sorts an SDK error into what callers expect and clear errors for the rest.
    fn failed<E>(
        &self,
        operation: &'static str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> Failed
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let (code, message) = match &err {
            SdkError::ServiceError(service) => (
                service.err().code().map(str::to_string),
                service.err().message().map(str::to_string),
            ),
            _ => (None, None),
        };
        match (&err, status) {
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => {
                let reason = match &err {
                    SdkError::TimeoutError(_) => "no answer in time".to_string(),
                    _ => error_chain(&err),
                };
                Failed::Error(RecordingError::StoreUnavailable {
                    endpoint: self.endpoint.clone(),
                    reason,
                })
            }
            (_, Some(404)) => Failed::NotFound,
            (_, Some(412)) => Failed::Precondition,
            (_, Some(416)) => Failed::Range,
            (_, Some(401 | 403)) => Failed::Error(RecordingError::StoreDenied {
                endpoint: self.endpoint.clone(),
                access_key_id: self.access_key_id.clone(),
                reason: format!(
                    "bucket {:?}, {operation}: {}",
                    self.bucket,
                    match (code, message) {
                        (Some(code), Some(message)) => format!("{code}: {message}"),
                        (Some(code), None) => code,
                        _ => format!("HTTP {}", status.unwrap_or(403)),
                    }
                ),
            }),
            (_, Some(status)) if status >= 500 => Failed::Error(RecordingError::StoreUnavailable {
                endpoint: self.endpoint.clone(),
                reason: format!(
                    "{operation} answered HTTP {status}{}",
                    code.map(|c| format!(" ({c})")).unwrap_or_default()
                ),
            }),
            _ => {
                let reason = match (code, message, status) {
                    (Some(code), Some(message), _) => format!("{code}: {message}"),
                    (Some(code), None, _) => code,
                    (None, _, Some(status)) => format!("HTTP {status}"),
                    (None, _, None) => error_chain(&err),
                };
                Failed::Error(self.store_error(operation, key, &reason))
            }
        }
    }

    fn fail<E>(
        &self,
        operation: &'static str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> RecordingError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match self.failed(operation, key, err) {
            Failed::Error(err) => err,
            Failed::NotFound => self.store_error(operation, key, "not found"),
            Failed::Precondition => self.store_error(operation, key, "precondition failed"),
            Failed::Range => self.store_error(operation, key, "range not satisfiable"),
        }
    }

    /// Every object under `prefix` after `start_after`, in key order.
    async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<String>,
    ) -> Result<Vec<Listed>, RecordingError> {
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let mut request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix);
            if let Some(after) = &start_after {
                request = request.start_after(after);
            }
            if let Some(token) = token.take() {
                request = request.continuation_token(token);
            }
            let page = request
                .send()
                .await
                .map_err(|err| self.fail("ListObjectsV2", prefix, err))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                found.push(Listed {
                    key: key.to_string(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                    modified: object
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return Ok(found),
            }
        }
    }

    /// The parts (and whether a state object exists) of one recording, from `from` on (all of
    /// them with 0). Keys that are not parts are ignored.
    async fn parts(&self, session_id: &SessionId, from: u64) -> Result<Parts, RecordingError> {
        // Keys are `OFFSET-HASH`: everything after `FROM-1-` sorts from offset FROM on.
        let start_after = from
            .checked_sub(1)
            .map(|before| format!("{}{before:020}.", self.parts_key(session_id)));
        let listed = self
            .list_from(&self.dir_key(session_id), start_after)
            .await?;
        let parts_prefix = self.parts_key(session_id);
        let state_key = self.state_key(session_id);
        let mut parts = Parts::default();
        for object in listed {
            parts.modified = parts.modified.max(Some(object.modified));
            if object.key == state_key {
                parts.state = true;
                continue;
            }
            let Some(offset) = object
                .key
                .strip_prefix(&parts_prefix)
                .and_then(|name| name.split_once('-'))
                .filter(|(digits, hash)| digits.len() == 20 && hash.len() == 16)
                .and_then(|(digits, _)| digits.parse::<u64>().ok())
            else {
                continue;
            };
            if object.size > 0 {
                parts.tiles.push((offset, object.key, object.size));
            }
        }
        parts.tiles.sort();
        Ok(parts)
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, Failed> {
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some((start, len)) = range {
            let last = start.saturating_add(len.saturating_sub(1));
            request = request.range(format!("bytes={start}-{last}"));
        }
        let response = request
            .send()
            .await
            .map_err(|err| self.failed("GetObject", key, err))?;
        let bytes = response.body.collect().await.map_err(|err| {
            Failed::Error(RecordingError::StoreUnavailable {
                endpoint: self.endpoint.clone(),
                reason: format!("reading {key}: {err}"),
            })
        })?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// HEAD: size, modified and ETag, or `None` if absent.
    async fn head(&self, key: &str) -> Result<Option<(u64, SystemTime, String)>, RecordingError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some((
                head.content_length()
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
                head.last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                head.e_tag().unwrap_or_default().to_string(),
            ))),
            Err(err) => match self.failed("HeadObject", key, err) {
                Failed::NotFound => Ok(None),
                Failed::Error(err) => Err(err),
                Failed::Precondition | Failed::Range => {
                    Err(self.store_error("HeadObject", key, "unexpected answer"))
                }
            },
        }
    }

    /// PUT with the store's encryption and ACL, and an optional condition.
    async fn put(&self, key: &str, bytes: Vec<u8>, condition: Condition<'_>) -> Result<(), Failed> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes));
        match condition {
            Condition::None => {}
            Condition::Absent => request = request.if_none_match("*"),
            Condition::Matches(etag) => request = request.if_match(etag),
        }
        request = request
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.sse_kms_key.clone())
            .set_acl(self.acl.clone());
        request
            .send()
            .await
            .map_err(|err| self.failed("PutObject", key, err))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), RecordingError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match self.failed("DeleteObject", key, err) {
                Failed::NotFound => Ok(()),
                Failed::Error(err) => Err(err),
                Failed::Precondition | Failed::Range => {
                    Err(self.store_error("DeleteObject", key, "unexpected answer"))
                }
            },
        }
    }

    async fn state(&self, session_id: &SessionId) -> Result<Option<State>, RecordingError> {
        let key = self.state_key(session_id);
        let response = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => {
                return match self.failed("GetObject", &key, err) {
                    Failed::NotFound => Ok(None),
                    Failed::Error(err) => Err(err),
                    Failed::Precondition | Failed::Range => {
                        Err(self.store_error("GetObject", &key, "unexpected answer"))
                    }
                };
            }
        };
        let etag = response.e_tag().unwrap_or_default().to_string();
        let body =
            response
                .body
                .collect()
                .await
                .map_err(|err| RecordingError::StoreUnavailable {
                    endpoint: self.endpoint.clone(),
                    reason: format!("reading {key}: {err}"),
                })?;
        let bytes = body.into_bytes();
        let text = std::str::from_utf8(&bytes).unwrap_or_default().trim();
        if text == "sealing" {
            return Ok(Some(State::Sealing { etag }));
        }
        match text
            .strip_prefix("complete ")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(len) => Ok(Some(State::Complete { len })),
            None => Err(RecordingError::Corrupt {
                session_id: session_id.clone(),
                reason: format!(
                    "{key} holds {:?}, expected \"sealing\" or \"complete LENGTH\"",
                    text.chars().take(40).collect::<String>()
                ),
            }),
        }
    }

    /// Decides the final length of a recording whose state is `sealing` (or absent, then
    /// seals it first). Returns the decided length; `None` if nothing was ever stored.
    pub async fn decide_length(
        &self,
        session_id: &SessionId,
    ) -> Result<Option<u64>, RecordingError> {
        for _ in 0..MAX_RACES {
            match self.state(session_id).await? {
                Some(State::Complete { len }) => return Ok(Some(len)),
                None => {
                    if self.parts(session_id, 0).await?.tiles.is_empty() {
                        return Ok(None);
                    }
                    match self
                        .put(
                            &self.state_key(session_id),
                            b"sealing".to_vec(),
                            Condition::Absent,
                        )
                        .await
                    {
                        Ok(()) | Err(Failed::Precondition) => {}
                        Err(Failed::Error(err)) => return Err(err),
                        Err(Failed::NotFound | Failed::Range) => {
                            return Err(self.store_error(
                                "PutObject",
                                &self.state_key(session_id),
                                "unexpected answer",
                            ));
                        }
                    }
                }
                Some(State::Sealing { etag }) => {
                    let len = self.parts(session_id, 0).await?.end();
                    match self
                        .put(
                            &self.state_key(session_id),
                            format!("complete {len}").into_bytes(),
                            Condition::Matches(&etag),
                        )
                        .await
                    {
                        Ok(()) => {
                            debug!(%session_id, len, "recording length decided");
                            return Ok(Some(len));
                        }
                        // Another auth server decided it first: read its decision.
                        Err(Failed::Precondition) => {}
                        Err(Failed::Error(err)) => return Err(err),
                        Err(Failed::NotFound | Failed::Range) => {
                            return Err(self.store_error(
                                "PutObject",
                                &self.state_key(session_id),
                                "unexpected answer",
                            ));
                        }
                    }
                }
            }
        }
        Err(self.raced(session_id))
    }

    fn raced(&self, session_id: &SessionId) -> RecordingError {
        RecordingError::Store {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            detail: format!(
                "{}: lost {MAX_RACES} races with other writers in a row; try again",
                self.dir_key(session_id)
            ),
        }
    }

    /// Copies the parts `[0, len)` into `SID.cast`, then deletes the parts. Idempotent: an
    /// existing `SID.cast` of the right size is kept.
    pub async fn assemble(&self, session_id: &SessionId, len: u64) -> Result<(), RecordingError> {
        let cast = self.cast_key(session_id);
        if self.head(&cast).await?.is_none() {
            let copied = async {
                let parts = self.parts(session_id, 0).await?;
                if parts.end() < len || parts.chain().is_some_and(|(start, _)| start != 0) {
                    return Err(RecordingError::Corrupt {
                        session_id: session_id.clone(),
                        reason: format!(
                            "the recording was completed at {len} bytes but only {} bytes of \
                             parts are stored and no {cast} exists",
                            parts.end()
                        ),
                    });
                }
                self.copy_parts(session_id, &parts, len).await
            }
            .await;
            match copied {
                Ok(()) => info!(%session_id, len, key = %cast, "recording assembled in S3"),
                // Parts missing or vanishing: another auth server assembled the recording
                // and deleted its parts meanwhile, or the store is damaged.
                Err(err @ RecordingError::Corrupt { .. }) => {
                    if self.head(&cast).await?.is_none() {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
        // The parts are now in SID.cast: delete them (and any stray part past the end).
        let parts = self.parts(session_id, 0).await?;
        for (_, key, _) in &parts.tiles {
            self.delete(key).await?;
        }
        Ok(())
    }

    async fn copy_parts(
        &self,
        session_id: &SessionId,
        parts: &Parts,
        len: u64,
    ) -> Result<(), RecordingError> {
        let cast = self.cast_key(session_id);
        let mut chunks = Vec::new();
        let mut buffer: Vec<u8> = Vec::new();
        let mut upload: Option<String> = None;
        let result = async {
            let mut offset = 0;
            while offset < len {
                let want = len_u64(ASSEMBLY_PART_LEN).min(len - offset);
                let Some(bytes) = self.read_parts(parts, len, offset, want).await? else {
                    return Err(RecordingError::Corrupt {
                        session_id: session_id.clone(),
                        reason: "a part vanished while assembling".to_string(),
                    });
                };
                if len_u64(bytes.len()) != want {
                    return Err(RecordingError::Corrupt {
                        session_id: session_id.clone(),
                        reason: format!(
                            "the parts hold {} bytes at offset {offset}, expected {want}",
                            bytes.len()
                        ),
                    });
                }
                offset += want;
                buffer = bytes;
                if offset < len || upload.is_some() {
                    let id = match &upload {
                        Some(id) => id.clone(),
                        None => {
                            let id = self.create_multipart(&cast).await?;
                            upload = Some(id.clone());
                            id
                        }
                    };
                    let chunk = std::mem::take(&mut buffer);
                    chunks.push(
                        self.upload_part(&cast, &id, chunks.len() + 1, chunk)
                            .await?,
                    );
                }
            }
            match &upload {
                None => self
                    .put(&cast, std::mem::take(&mut buffer), Condition::None)
                    .await
                    .map_err(|f| self.failure(f, "PutObject", &cast)),
                Some(id) => {
                    self.client
                        .complete_multipart_upload()
                        .bucket(&self.bucket)
                        .key(&cast)
                        .upload_id(id)
                        .multipart_upload(
                            CompletedMultipartUpload::builder()
                                .set_parts(Some(chunks.clone()))
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|err| self.fail("CompleteMultipartUpload", &cast, err))?;
                    Ok(())
                }
            }
        }
        .await;
        if let (Err(_), Some(id)) = (&result, &upload) {
            // Best effort: an upload left behind is never referenced and a lifecycle rule
            // removes it.
            if let Err(err) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&cast)
                .upload_id(id)
                .send()
                .await
            {
                warn!(%session_id, error = %self.fail("AbortMultipartUpload", &cast, err), "could not abort a multipart upload");
            }
        }
        result
    }

    fn failure(&self, failed: Failed, operation: &'static str, key: &str) -> RecordingError {
        match failed {
            Failed::Error(err) => err,
            Failed::NotFound => self.store_error(operation, key, "not found"),
            Failed::Precondition => self.store_error(operation, key, "precondition failed"),
            Failed::Range => self.store_error(operation, key, "range not satisfiable"),
        }
    }

    async fn create_multipart(&self, key: &str) -> Result<String, RecordingError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.sse_kms_key.clone())
            .set_acl(self.acl.clone())
            .send()
            .await
            .map_err(|err| self.fail("CreateMultipartUpload", key, err))?;
        created
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| self.store_error("CreateMultipartUpload", key, "no upload id returned"))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        bytes: Vec<u8>,
    ) -> Result<CompletedPart, RecordingError> {
        let number = i32::try_from(number)
            .map_err(|_| self.store_error("UploadPart", key, "too many parts"))?;
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|err| self.fail("UploadPart", key, err))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(uploaded.e_tag().map(str::to_string))
            .build())
    }

    /// Up to `max_len` bytes from `offset` of a recording still in parts, whose valid bytes
    /// end at `end`. `None` when a part vanished (assembled meanwhile): start again.
    async fn read_parts(
        &self,
        parts: &Parts,
        end: u64,
        offset: u64,
        max_len: u64,
    ) -> Result<Option<Vec<u8>>, RecordingError> {
        let stop = end.min(offset.saturating_add(max_len));
        let mut out = Vec::new();
        let mut pos = offset;
        // Parts are in offset order and cover [first, end) without gaps; where two overlap
        // (two writers raced at one offset with the same bytes) either serves.
        for (start, key, size) in &parts.tiles {
            if pos >= stop || *start > pos {
                break;
            }
            let upto = start.saturating_add(*size).min(stop);
            if upto <= pos {
                continue;
            }
            match self.get(key, Some((pos - start, upto - pos))).await {
                Ok(bytes) if len_u64(bytes.len()) == upto - pos => out.extend_from_slice(&bytes),
                Ok(_) => return Ok(None),
                Err(Failed::NotFound) => return Ok(None),
                Err(failed) => return Err(self.failure(failed, "GetObject", key)),
            }
            pos = upto;
        }
        Ok(Some(out))
    }

    /// `[offset, offset + max_len)` of a recording, clipped at its end.
    async fn range(
        &self,
        session_id: &SessionId,
        offset: u64,
        max_len: u64,
    ) -> Result<Vec<u8>, RecordingError> {
        let cast = self.cast_key(session_id);
        if max_len == 0 || offset >= self.max_len {
            // Nothing to read (no recording is that long): only whether it exists matters.
            return match self.info(session_id).await? {
                Some(_) => Ok(Vec::new()),
                None => Err(RecordingError::NotFound {
                    session_id: session_id.clone(),
                }),
            };
        }
        // Never a range past what a recording may hold (servers refuse huge numbers).
        let max_len = max_len.min(self.max_len.saturating_add(1));
        for _ in 0..MAX_RACES {
            match self.get(&cast, Some((offset, max_len))).await {
                Ok(bytes) => return Ok(bytes),
                Err(Failed::Range) => return Ok(Vec::new()),
                Err(Failed::NotFound) => {}
                Err(failed) => return Err(self.failure(failed, "GetObject", &cast)),
            }
            let parts = self.parts(session_id, 0).await?;
            if parts.tiles.is_empty() && !parts.state {
                if self.head(&cast).await?.is_some() {
                    continue;
                }
                return Err(RecordingError::NotFound {
                    session_id: session_id.clone(),
                });
            }
            let end = match parts.state.then_some(()) {
                Some(()) => match self.state(session_id).await? {
                    Some(State::Complete { len }) => len,
                    _ => parts.end(),
                },
                None => parts.end(),
            };
            if let Some(bytes) = self.read_parts(&parts, end, offset, max_len).await? {
                return Ok(bytes);
            }
        }
        Err(self.raced(session_id))
    }

    async fn append(
        &self,
        session_id: &SessionId,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<u64, RecordingError> {
        if bytes.len() > MAX_PART_LEN {
            return Err(RecordingError::PartTooLarge {
                len: bytes.len(),
                max: MAX_PART_LEN,
            });
        }
        let end = offset.saturating_add(len_u64(bytes.len()));
        for _ in 0..MAX_RACES {
            // The part holding the byte before `offset` starts at most MAX_PART_LEN before it.
            let window = offset.saturating_sub(len_u64(MAX_PART_LEN));
            let mut parts = self.parts(session_id, window).await?;
            if parts.state {
                return self.append_completed(session_id, offset, &bytes).await;
            }
            let stored = match parts.chain() {
                Some((start, end)) if start <= offset && offset <= end => end,
                None if offset == 0 => 0,
                _ => {
                    // Past the end (or no part near it): list all to say where the end is.
                    parts = self.parts(session_id, 0).await?;
                    if parts.state {
                        return self.append_completed(session_id, offset, &bytes).await;
                    }
                    parts.end()
                }
            };
            if offset > stored {
                return Err(RecordingError::Gap {
                    session_id: session_id.clone(),
                    offset,
                    stored,
                });
            }
            if bytes.is_empty() {
                return Ok(stored);
            }
            // Bytes of this part that are already stored must match them.
            let overlap = stored.min(end);
            if overlap > offset {
                let Some(old) = self
                    .read_parts(&parts, stored, offset, overlap - offset)
                    .await?
                else {
                    continue;
                };
                if Some(old.as_slice()) != bytes.get(..old.len())
                    || len_u64(old.len()) != overlap - offset
                {
                    return Err(RecordingError::Conflict {
                        session_id: session_id.clone(),
                        offset,
                    });
                }
            }
            if end <= stored {
                return Ok(stored);
            }
            if end > self.max_len {
                return Err(RecordingError::TooLarge {
                    size: end,
                    max: self.max_len,
                });
            }
            let new = bytes
                .get(usize::try_from(stored - offset).unwrap_or(usize::MAX)..)
                .unwrap_or_default()
                .to_vec();
            let key = self.part_key(session_id, stored, &new);
            if let Err(failed) = self.put(&key, new, Condition::None).await {
                return Err(self.failure(failed, "PutObject", &key));
            }
            // Only now look for a completion: see the module docs.
            if self.head(&self.state_key(session_id)).await?.is_none() {
                debug!(%session_id, offset = stored, len = end - stored, "recording part stored");
                return Ok(end);
            }
            return self.append_completed(session_id, offset, &bytes).await;
        }
        Err(self.raced(session_id))
    }

    /// An append to a recording with a state object: decide its length, then acknowledge
    /// bytes inside it (after comparing them) and refuse new ones.
    async fn append_completed(
        &self,
        session_id: &SessionId,
        offset: u64,
        bytes: &[u8],
    ) -> Result<u64, RecordingError> {
        let Some(len) = self.decide_length(session_id).await? else {
            return Err(RecordingError::NotFound {
                session_id: session_id.clone(),
            });
        };
        if offset > len {
            return Err(RecordingError::Gap {
                session_id: session_id.clone(),
                offset,
                stored: len,
            });
        }
        let end = offset.saturating_add(len_u64(bytes.len()));
        let overlap = len.min(end);
        if overlap > offset {
            let old = self.range(session_id, offset, overlap - offset).await?;
            if Some(old.as_slice()) != bytes.get(..old.len()) {
                return Err(RecordingError::Conflict {
                    session_id: session_id.clone(),
                    offset,
                });
            }
        }
        if end <= len {
            return Ok(len);
        }
        // A part written past the decided length is not in the recording: remove it.
        let stray = self.parts(session_id, len).await?;
        for (start, key, _) in &stray.tiles {
            if *start >= len {
                self.delete(key).await?;
            }
        }
        Err(RecordingError::AlreadyComplete {
            session_id: session_id.clone(),
            stored: len,
        })
    }

    async fn info(&self, session_id: &SessionId) -> Result<Option<RecordingInfo>, RecordingError> {
        if let Some((size, modified, _)) = self.head(&self.cast_key(session_id)).await? {
            return Ok(Some(RecordingInfo {
                session_id: session_id.clone(),
                size,
                completed: true,
                modified,
            }));
        }
        let parts = self.parts(session_id, 0).await?;
        if parts.tiles.is_empty() && !parts.state {
            // Assembled between the HEAD and the listing?
            return Ok(self
                .head(&self.cast_key(session_id))
                .await?
                .map(|(size, modified, _)| RecordingInfo {
                    session_id: session_id.clone(),
                    size,
                    completed: true,
                    modified,
                }));
        }
        let (size, completed) = match parts.state {
            true => match self.state(session_id).await? {
                Some(State::Complete { len }) => (len, true),
                _ => (parts.end(), false),
            },
            false => (parts.end(), false),
        };
        Ok(Some(RecordingInfo {
            session_id: session_id.clone(),
            size,
            completed,
            modified: parts.modified.unwrap_or(SystemTime::UNIX_EPOCH),
        }))
    }

    async fn list_all(&self) -> Result<Vec<RecordingInfo>, RecordingError> {
        let listed = self.list_from(&self.prefix, None).await?;
        let mut cast: BTreeMap<SessionId, (u64, SystemTime)> = BTreeMap::new();
        let mut pending: BTreeMap<SessionId, ()> = BTreeMap::new();
        for object in listed {
            let Some(rest) = object.key.strip_prefix(&self.prefix) else {
                continue;
            };
            if let Some(id) = rest.strip_suffix(".cast")
                && let Ok(session_id) = SessionId::new(id)
            {
                cast.insert(session_id, (object.size, object.modified));
            } else if let Some((id, _)) = rest.split_once('/')
                && let Ok(session_id) = SessionId::new(id)
            {
                pending.insert(session_id, ());
            }
        }
        let mut found: Vec<RecordingInfo> = cast
            .iter()
            .map(|(session_id, (size, modified))| RecordingInfo {
                session_id: session_id.clone(),
                size: *size,
                completed: true,
                modified: *modified,
            })
            .collect();
        for session_id in pending.keys() {
            if cast.contains_key(session_id) {
                continue;
            }
            if let Some(info) = self.info(session_id).await? {
                found.push(info);
            }
        }
        found.sort_by(|a, b| (a.modified, &a.session_id).cmp(&(b.modified, &b.session_id)));
        Ok(found)
    }

    async fn read_all(&self, session_id: &SessionId) -> Result<Vec<u8>, RecordingError> {
        let Some(info) = self.info(session_id).await? else {
            return Err(RecordingError::NotFound {
                session_id: session_id.clone(),
            });
        };
        if info.size > self.max_len {
            return Err(RecordingError::TooLarge {
                size: info.size,
                max: self.max_len,
            });
        }
        // One more byte than the limit, so that a recording that grew meanwhile is refused.
        let bytes = self
            .range(session_id, 0, self.max_len.saturating_add(1))
            .await?;
        if len_u64(bytes.len()) > self.max_len {
            return Err(RecordingError::TooLarge {
                size: len_u64(bytes.len()),
                max: self.max_len,
            });
        }
        Ok(bytes)
    }

    async fn complete_recording(
        &self,
        session_id: &SessionId,
    ) -> Result<RecordingInfo, RecordingError> {
        if self.head(&self.cast_key(session_id)).await?.is_none() {
            let Some(len) = self.decide_length(session_id).await? else {
                return Err(RecordingError::NotFound {
                    session_id: session_id.clone(),
                });
            };
            self.assemble(session_id, len).await?;
        } else {
            // Already assembled; parts left by a crash after assembly are removed now.
            let leftover = self.parts(session_id, 0).await?;
            for (_, key, _) in &leftover.tiles {
                self.delete(key).await?;
            }
        }
        let Some((size, modified, _)) = self.head(&self.cast_key(session_id)).await? else {
            return Err(self.store_error(
                "HeadObject",
                &self.cast_key(session_id),
                "the assembled recording vanished",
            ));
        };
        Ok(RecordingInfo {
            session_id: session_id.clone(),
            size,
            completed: true,
            modified,
        })
    }
}

/// The precondition of a PUT.
#[derive(Debug, Clone, Copy)]
enum Condition<'a> {
    None,
    /// `If-None-Match: *`: only if no object has the key.
    Absent,
    /// `If-Match: ETAG`: only if the object is still this one.
    Matches(&'a str),
}

async fn access_key_id(
    provider: &SharedCredentialsProvider,
    endpoint: &str,
) -> Result<String, RecordingError> {
    use aws_sdk_s3::config::ProvideCredentials;
    match provider.provide_credentials().await {
        Ok(credentials) => Ok(credentials.access_key_id().to_string()),
        Err(err) => Err(RecordingError::StoreConfig {
            reason: format!(
                "no usable AWS credentials for S3 at {endpoint}: {}; set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, a profile, or an instance role",
                error_chain(&err)
            ),
        }),
    }
}

/// An error and its sources on one line (the SDK's own `Display` is terse).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        let more = next.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = next.source();
    }
    text
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

impl RecordingStore for S3RecordingStore {
    fn append_part<'a>(
        &'a self,
        session_id: &'a SessionId,
        offset: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, RecordingError>> {
        Box::pin(self.append(session_id, offset, bytes))
    }

    fn complete<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<RecordingInfo, RecordingError>> {
        Box::pin(self.complete_recording(session_id))
    }

    fn stat<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<RecordingInfo>, RecordingError>> {
        Box::pin(self.info(session_id))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RecordingInfo>, RecordingError>> {
        Box::pin(self.list_all())
    }

    fn read<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Vec<u8>, RecordingError>> {
        Box::pin(self.read_all(session_id))
    }

    fn read_range<'a>(
        &'a self,
        session_id: &'a SessionId,
        offset: u64,
        max_len: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, RecordingError>> {
        Box::pin(self.range(session_id, offset, max_len.min(self.max_len)))
    }
}
