//! Audit events in DynamoDB (`audit_events_uri: dynamodb://TABLE?region=R`, Teleport's
//! form), so that every auth server of a cluster on AWS (seed 004) writes to and searches one
//! log.
//!
//! One table with a string partition key `P` and a string sort key `S`:
//! - an event is the item `P = "day#YYYY-MM-DD"` (its UTC day),
//!   `S = "<time>#<stamp>#<uid>"`: its millisecond time shifted to be non-negative in 15
//!   digits, so string order is time order; then an append stamp (microseconds, strictly
//!   increasing in each process, in 16 digits), so events of one millisecond keep the order
//!   they were appended in, as on the other stores; then the uid. With its type, user and
//!   session for filtering and the whole event as JSON (`Data`).
//! - `P = "uid#<uid>"` marks an event as stored. It is written in one transaction with the
//!   event, on the condition that it does not exist yet, so an event retried through
//!   another auth server (whose stamp differs) is still stored once.
//! - the days that hold events are listed as `P = "days"`, `S = "YYYY-MM-DD"` (written once
//!   per day and process), so a search over years reads only the days that have events.
//!
//! A search walks the days of its range in order and queries each one's key range,
//! filtering type, user and session on the server, until it has `limit + 1` matches. The
//! cursor is the sort key of the last event returned (`d1` + its 63 digits).
//!
//! Costs: a transaction of two writes per event (four write units), one more write for the
//! first event of a day in a process; a search reads the day list, then each day's events
//! in its range (filtered events are still read and paid for). All of a day's events share
//! one partition: DynamoDB serves about 1,000 writes a second to one partition key, far
//! above an audit log's rate. Across auth servers, the order inside one millisecond follows
//! their clocks' microseconds.
//! Durability: DynamoDB acknowledges a write once it is stored in several availability
//! zones.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem,
};

use crate::{AuditEvent, AuditLog, BoxFuture, Error, Order, Page, Result, SearchQuery, Timestamp};

/// Added to every time so the sort key never holds a sign: 0000-01-01 becomes 0.
const TIME_OFFSET: i64 = 62_167_219_200_000;
/// The partition listing the days that hold events.
const DAYS: &str = "days";
/// Version tag of this store's cursors.
const CURSOR_PREFIX: &str = "d1";

/// Where a DynamoDB audit log lives: from `dynamodb://TABLE?region=R&endpoint=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoAuditTarget {
    pub table: String,
    /// `None`: the region of the AWS configuration (environment, profile).
    pub region: Option<String>,
    /// Another endpoint than AWS's (a VPC endpoint, a local emulator).
    pub endpoint: Option<String>,
}

impl DynamoAuditTarget {
    /// Parses `dynamodb://TABLE?region=R&endpoint=URL`; a reason naming the problem otherwise.
    pub fn parse(uri: &str) -> std::result::Result<DynamoAuditTarget, String> {
        let rest = uri
            .strip_prefix("dynamodb://")
            .ok_or_else(|| "expected dynamodb://TABLE?region=REGION".to_string())?;
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        let table = table.trim_end_matches('/');
        let valid_name = (3..=255).contains(&table.len())
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !valid_name {
            return Err(format!(
                "{table:?} is not a DynamoDB table name (3 to 255 of a-z A-Z 0-9 _ - .)"
            ));
        }
        let mut target = DynamoAuditTarget {
            table: table.to_string(),
            region: None,
            endpoint: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if value.is_empty() {
                return Err(format!("{key} has no value"));
            }
            match key {
                "region" => target.region = Some(value.to_string()),
                "endpoint" => {
                    if !(value.starts_with("http://") || value.starts_with("https://")) {
                        return Err(format!("endpoint {value:?} must be an http(s):// URL"));
                    }
                    target.endpoint = Some(value.to_string());
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}; this store takes region and endpoint"
                    ));
                }
            }
        }
        Ok(target)
    }

    /// "DynamoDB table T in region R at E", for messages.
    pub fn describe(&self) -> String {
        let mut text = format!("DynamoDB table {}", self.table);
        if let Some(region) = &self.region {
            text.push_str(&format!(" in region {region}"));
        }
        if let Some(endpoint) = &self.endpoint {
            text.push_str(&format!(" at {endpoint}"));
        }
        text
    }
}

/// The DynamoDB audit store; the services hold it in an `Arc`.
#[derive(Debug)]
pub struct DynamoAuditLog {
    client: Client,
    target: DynamoAuditTarget,
    place: String,
    /// Days this process has listed already.
    days_listed: Mutex<HashSet<String>>,
    closed: AtomicBool,
}

impl DynamoAuditLog {
    /// Connects with the standard AWS credential chain and creates the table if missing.
    pub async fn open(target: DynamoAuditTarget) -> Result<DynamoAuditLog> {
        DynamoAuditLog::open_with(target, None, Duration::from_secs(10)).await
    }

    /// As [`Self::open`], with static credentials (access key id, secret) instead of the
    /// chain, and a request timeout.
    pub async fn open_with(
        target: DynamoAuditTarget,
        credentials: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<DynamoAuditLog> {
        let timeouts = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .operation_attempt_timeout(timeout)
            .operation_timeout(timeout)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts.clone());
        if let Some(region) = &target.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((key_id, secret)) = credentials {
            loader = loader.credentials_provider(Credentials::new(
                key_id,
                secret,
                None,
                None,
                "jumpgate-static",
            ));
        }
        let sdk = loader.load().await;
        let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .timeout_config(timeouts)
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(2),
            );
        if let Some(endpoint) = &target.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        let place = target.describe();
        let log = DynamoAuditLog {
            client: Client::from_conf(config.build()),
            target,
            place,
            days_listed: Mutex::default(),
            closed: AtomicBool::new(false),
        };
        log.ensure_table().await?;
        Ok(log)
    }

    fn unavailable(&self, action: &'static str, detail: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            store: "DynamoDB",
            endpoint: self.place.clone(),
            action,
            detail: detail.to_string(),
        }
    }

    fn classify<E>(&self, action: &'static str, err: &SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if let SdkError::ServiceError(context) = err {
            let code = context.err().code().unwrap_or_default();
            let status = context.raw().status().as_u16();
            let refused = matches!(
                code,
                "UnrecognizedClientException"
                    | "InvalidClientTokenId"
                    | "InvalidSignatureException"
                    | "SignatureDoesNotMatch"
                    | "MissingAuthenticationToken"
                    | "ExpiredTokenException"
                    | "AccessDeniedException"
            ) || (code.is_empty() && (status == 401 || status == 403));
            if refused {
                return Error::Refused {
                    store: "DynamoDB",
                    endpoint: self.place.clone(),
                    detail: format!(
                        "{code} (HTTP {status}); check the AWS credentials (environment, \
                         profile or instance role) and their permissions on the table"
                    ),
                };
            }
        }
        self.unavailable(action, DisplayErrorContext(err))
    }

    async fn ensure_table(&self) -> Result<()> {
        let action = "creating the audit table";
        let described = self
            .client
            .describe_table()
            .table_name(&self.target.table)
            .send()
            .await;
        match described {
            Ok(_) => return Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(err) => return Err(self.classify(action, &err)),
        }
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let build = |e: aws_sdk_dynamodb::error::BuildError| self.unavailable(action, e);
        let created = self
            .client
            .create_table()
            .table_name(&self.target.table)
            .attribute_definitions(attribute("P").map_err(build)?)
            .attribute_definitions(attribute("S").map_err(build)?)
            .key_schema(key("P", KeyType::Hash).map_err(build)?)
            .key_schema(key("S", KeyType::Range).map_err(build)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another auth server created it meanwhile.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(err) => return Err(self.classify(action, &err)),
        }
        // Wait (bounded) until the table takes writes.
        for _ in 0..60 {
            let status = self
                .client
                .describe_table()
                .table_name(&self.target.table)
                .send()
                .await
                .map_err(|err| self.classify(action, &err))?
                .table
                .and_then(|t| t.table_status);
            if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                tracing::info!(place = %self.place, "created the audit event table");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(self.unavailable(action, "the new table did not become active within 30 s"))
    }

    async fn append_event(&self, event: AuditEvent) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let action = "appending an event";
        let day = event.time().utc_date();
        let listed = self
            .days_listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&day);
        if !listed {
            self.client
                .put_item()
                .table_name(&self.target.table)
                .item("P", AttributeValue::S(DAYS.to_string()))
                .item("S", AttributeValue::S(day.clone()))
                .send()
                .await
                .map_err(|err| self.classify(action, &err))?;
            self.days_listed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(day.clone());
        }
        let mut event_item = Put::builder()
            .table_name(&self.target.table)
            .item("P", AttributeValue::S(format!("day#{day}")))
            .item(
                "S",
                AttributeValue::S(sort_key(event.time().unix_millis(), next_stamp(), &event)),
            )
            .item(
                "E",
                AttributeValue::S(event.event_type().name().to_string()),
            )
            .item("Data", AttributeValue::S(event.to_json()?));
        if let Some(user) = event.user_name() {
            event_item = event_item.item("U", AttributeValue::S(user.to_string()));
        }
        if let Some(sid) = event.sid() {
            event_item = event_item.item("Sid", AttributeValue::S(sid.to_string()));
        }
        let marker = Put::builder()
            .table_name(&self.target.table)
            .item(
                "P",
                AttributeValue::S(format!("uid#{}", event.uid().simple())),
            )
            .item("S", AttributeValue::S("stored".to_string()))
            .condition_expression("attribute_not_exists(P)");
        let build = |e: aws_sdk_dynamodb::error::BuildError| self.unavailable(action, e);
        let written = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(marker.build().map_err(build)?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(event_item.build().map_err(build)?)
                    .build(),
            )
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    err.as_service_error()
                {
                    let codes: Vec<&str> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|reason| reason.code())
                        .collect();
                    // Only the marker's condition failed: the event is stored already.
                    if codes.first() == Some(&"ConditionalCheckFailed")
                        && codes.iter().skip(1).all(|code| *code == "None")
                    {
                        return Ok(());
                    }
                }
                Err(self.classify(action, &err))
            }
        }
    }

    /// The days in `[from, to)` that hold events, in the query's order.
    async fn days(&self, query: &SearchQuery) -> Result<Vec<String>> {
        let action = "listing the days with events";
        let first = query.from.utc_date();
        // `to` is exclusive: its own day only counts if the range reaches into it.
        let last = query.to.saturating_add_millis(-1).utc_date();
        let mut days = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.target.table)
                .key_condition_expression("P = :p AND S BETWEEN :a AND :b")
                .expression_attribute_values(":p", AttributeValue::S(DAYS.to_string()))
                .expression_attribute_values(":a", AttributeValue::S(first.clone()))
                .expression_attribute_values(":b", AttributeValue::S(last.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|err| self.classify(action, &err))?;
            for item in page.items() {
                if let Some(AttributeValue::S(day)) = item.get("S") {
                    days.push(day.clone());
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        if query.order == Order::Descending {
            days.reverse();
        }
        Ok(days)
    }

    async fn search_events(&self, query: SearchQuery) -> Result<Page> {
        query.check()?;
        let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let action = "searching events";
        if query.from >= query.to {
            return Ok(Page {
                events: Vec::new(),
                next_cursor: None,
            });
        }
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let ascending = query.order == Order::Ascending;
        // Keys are "<time>#<uid>": "<from>" sorts before every key of `from`'s millisecond,
        // "<to>" after every key of earlier ones and before those of `to` (exclusive).
        let lo = format!("{:015}", shifted(query.from.unix_millis()));
        let hi = format!("{:015}", shifted(query.to.unix_millis()));
        let mut found: Vec<(String, AuditEvent)> = Vec::new();
        'days: for day in self.days(&query).await? {
            let mut start = None;
            loop {
                let mut request = self
                    .client
                    .query()
                    .table_name(&self.target.table)
                    .key_condition_expression("P = :p AND S BETWEEN :lo AND :hi")
                    .expression_attribute_values(":p", AttributeValue::S(format!("day#{day}")))
                    .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                    .expression_attribute_values(":hi", AttributeValue::S(hi.clone()))
                    .scan_index_forward(ascending)
                    .set_exclusive_start_key(start);
                let mut filters = Vec::new();
                if !query.event_types.is_empty() {
                    let names: Vec<String> = (0..query.event_types.len())
                        .map(|i| format!(":e{i}"))
                        .collect();
                    filters.push(format!("E IN ({})", names.join(", ")));
                    for (name, kind) in names.iter().zip(&query.event_types) {
                        request = request.expression_attribute_values(
                            name,
                            AttributeValue::S(kind.name().to_string()),
                        );
                    }
                }
                if let Some(user) = &query.user {
                    filters.push("U = :u".to_string());
                    request =
                        request.expression_attribute_values(":u", AttributeValue::S(user.clone()));
                }
                if let Some(sid) = &query.session_id {
                    filters.push("Sid = :sid".to_string());
                    request =
                        request.expression_attribute_values(":sid", AttributeValue::S(sid.clone()));
                }
                if !filters.is_empty() {
                    request = request.filter_expression(filters.join(" AND "));
                }
                let page = request
                    .send()
                    .await
                    .map_err(|err| self.classify(action, &err))?;
                for item in page.items() {
                    let (Some(AttributeValue::S(sort)), Some(AttributeValue::S(data))) =
                        (item.get("S"), item.get("Data"))
                    else {
                        return Err(self.unavailable(action, "an item without S or Data"));
                    };
                    if let Some(after) = &after {
                        let past = if ascending {
                            sort.as_str() > after.as_str()
                        } else {
                            sort.as_str() < after.as_str()
                        };
                        if !past {
                            continue;
                        }
                    }
                    let event: AuditEvent =
                        serde_json::from_str(data).map_err(|source| Error::CorruptItem {
                            store: "DynamoDB",
                            key: format!("day#{day} {sort}"),
                            reason: source.to_string(),
                        })?;
                    found.push((sort.clone(), event));
                    if found.len() > limit {
                        break 'days;
                    }
                }
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        let more = found.len() > limit;
        found.truncate(limit);
        let next_cursor = if more {
            found
                .last()
                .map(|(sort, _)| format!("{CURSOR_PREFIX}{}", encode_sort(sort)))
        } else {
            None
        };
        Ok(Page {
            events: found.into_iter().map(|(_, event)| event).collect(),
            next_cursor,
        })
    }
}

fn shifted(time_ms: i64) -> i64 {
    time_ms.saturating_add(TIME_OFFSET)
}

/// `<15-digit shifted time>#<16-digit stamp>#<uid as 32 hex digits>`.
fn sort_key(time_ms: i64, stamp: u64, event: &AuditEvent) -> String {
    format!(
        "{:015}#{stamp:016}#{}",
        shifted(time_ms),
        event.uid().simple()
    )
}

/// Microseconds since 1970, strictly increasing in this process: the order of appends.
fn next_stamp() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A sort key as it goes in a cursor: its digits, without the `#`s.
fn encode_sort(sort: &str) -> String {
    sort.replace('#', "")
}

/// The sort key a cursor stands for; `InvalidCursor` for anything this store did not make.
fn decode_cursor(cursor: &str) -> Result<String> {
    let body = cursor
        .strip_prefix(CURSOR_PREFIX)
        .ok_or(Error::InvalidCursor {
            reason: "unknown format",
        })?;
    if body.len() != 63 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidCursor {
            reason: "expected 63 hexadecimal digits after the version",
        });
    }
    let (time, rest) = body.split_at(15);
    let (stamp, uid) = rest.split_at(16);
    if !time
        .bytes()
        .chain(stamp.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(Error::InvalidCursor {
            reason: "the time or the stamp is not decimal",
        });
    }
    let time_ms = time.parse::<i64>().map_err(|_| Error::InvalidCursor {
        reason: "time out of range",
    })? - TIME_OFFSET;
    if Timestamp::from_unix_millis(time_ms).is_err() {
        return Err(Error::InvalidCursor {
            reason: "time out of range",
        });
    }
    Ok(format!("{time}#{stamp}#{uid}"))
}

impl AuditLog for DynamoAuditLog {
    fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.append_event(event))
    }

    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Page>> {
        Box::pin(self.search_events(query))
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        self.closed.store(true, Ordering::Release);
        Box::pin(async { Ok(()) })
    }
}
