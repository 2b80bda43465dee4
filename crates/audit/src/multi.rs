//! Several stores at once, when `audit_events_uri` lists several: the first answers
//! searches, every one gets every event.

use std::sync::Arc;

use crate::{AuditEvent, AuditLog, BoxFuture, Page, Result, SearchQuery};

/// Appends to every store and searches the first.
#[derive(Debug, Clone)]
pub struct MultiLog {
    primary: Arc<dyn AuditLog>,
    others: Vec<Arc<dyn AuditLog>>,
}

impl MultiLog {
    /// `primary` answers searches; `others` only receive appends.
    pub fn new(primary: Arc<dyn AuditLog>, others: Vec<Arc<dyn AuditLog>>) -> MultiLog {
        MultiLog { primary, others }
    }

    fn all(&self) -> impl Iterator<Item = &Arc<dyn AuditLog>> {
        std::iter::once(&self.primary).chain(self.others.iter())
    }

    /// Runs `op` on every store even when one fails, so one broken sink does not starve
    /// the others; returns the first error.
    async fn each<'a, F>(&'a self, op: F) -> Result<()>
    where
        F: Fn(&'a Arc<dyn AuditLog>) -> BoxFuture<'a, Result<()>>,
    {
        let mut first_error = None;
        for log in self.all() {
            if let Err(e) = op(log).await {
                tracing::error!(error = %e, "audit store failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl AuditLog for MultiLog {
    fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.each(|log| log.append(event.clone())).await })
    }

    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Page>> {
        self.primary.search(query)
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.each(|log| log.close()))
    }
}
