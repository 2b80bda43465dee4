//! The store interface.
//!
//! Boxed futures rather than `async fn` in the trait: the trait must be object-safe so that
//! [`crate::MultiLog`] and the services can hold `Arc<dyn AuditLog>` without knowing which
//! store the config chose, and `async-trait` would only generate the same boxes.

use std::future::Future;
use std::pin::Pin;

use crate::{AuditEvent, Page, Result, SearchQuery};

/// A `Send` boxed future, as returned by [`AuditLog`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait AuditLog: Send + Sync + std::fmt::Debug {
    /// Stores one event. When this returns `Ok`, the event is durable (synced to disk).
    /// Appending an event whose `uid` is already stored is a no-op, so retries are safe.
    fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<()>>;

    /// One page of events matching `query`, in `query.order`, and a cursor for the next.
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Page>>;

    /// Flushes and releases the store; later calls fail with [`crate::Error::Closed`].
    fn close(&self) -> BoxFuture<'_, Result<()>>;
}

#[cfg(feature = "stores")]
pub use counted::CountedLog;

#[cfg(feature = "stores")]
mod counted {
    use super::{AuditEvent, AuditLog, BoxFuture, Page, Result, SearchQuery};

    /// An [`AuditLog`] that counts what it writes in `jumpgate_audit_events_total`
    /// (`written` / `failed`): the one an operator alerts on, since a failed audit write
    /// refuses the action it records.
    #[derive(Debug)]
    pub struct CountedLog {
        inner: std::sync::Arc<dyn AuditLog>,
    }

    impl CountedLog {
        pub fn new(inner: std::sync::Arc<dyn AuditLog>) -> CountedLog {
            CountedLog { inner }
        }
    }

    impl AuditLog for CountedLog {
        fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<()>> {
            Box::pin(async move {
                let written = self.inner.append(event).await;
                let result = if written.is_ok() { "written" } else { "failed" };
                jumpgate_telemetry::count(|m| &m.audit_events, &[result]);
                written
            })
        }

        fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Page>> {
            self.inner.search(query)
        }

        fn close(&self) -> BoxFuture<'_, Result<()>> {
            self.inner.close()
        }
    }
}
