//! Search: a time range (required, so no query scans the whole history by accident),
//! optional filters, and keyset pagination with an opaque cursor.
//!
//! Events are ordered by (time, insertion row). A cursor is the position of the last event
//! of a page, and the next page starts strictly after it. Because the position is a key
//! and not an offset, events appended while a caller pages never make it see an event
//! twice or skip one it had not reached yet.

use crate::{AuditEvent, Error, EventType, Result, Timestamp};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first.
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// What to search for. `from` is inclusive and `to` exclusive, so adjacent ranges
/// (`[a, b)`, `[b, c)`) never return an event twice.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub(crate) from: Timestamp,
    pub(crate) to: Timestamp,
    pub(crate) event_types: Vec<EventType>,
    pub(crate) user: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) limit: u32,
    pub(crate) order: Order,
    pub(crate) cursor: Option<String>,
}

impl SearchQuery {
    /// Every event in `[from, to)`, oldest first, [`DEFAULT_LIMIT`] per page.
    pub fn new(from: Timestamp, to: Timestamp) -> SearchQuery {
        SearchQuery {
            from,
            to,
            event_types: Vec::new(),
            user: None,
            session_id: None,
            limit: DEFAULT_LIMIT,
            order: Order::Ascending,
            cursor: None,
        }
    }

    /// Only these event types (an empty list means all).
    pub fn event_types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.event_types = types.into_iter().collect();
        self
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn session_id(mut self, sid: impl Into<String>) -> Self {
        self.session_id = Some(sid.into());
        self
    }

    /// Page size, 1..=[`MAX_LIMIT`]; anything else is refused by `search`.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Continue after the page that returned this `next_cursor`.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Checks the range and the limit before any store work.
    pub(crate) fn check(&self) -> Result<()> {
        if self.from > self.to {
            return Err(Error::InvalidRange {
                from: self.from.to_string(),
                to: self.to.to_string(),
            });
        }
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(Error::InvalidLimit {
                limit: self.limit,
                max: MAX_LIMIT,
            });
        }
        Ok(())
    }

    /// [`Self::check`], and the cursor of the (time, row) stores decoded.
    pub(crate) fn validate(&self) -> Result<Option<Position>> {
        self.check()?;
        self.cursor.as_deref().map(Position::decode).transpose()
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<AuditEvent>,
    /// Pass to [`SearchQuery::cursor`] for the next page; `None` when this page was the last
    /// one at the time of the query.
    pub next_cursor: Option<String>,
}

/// Where a page ended: the event's time and its store row.
#[cfg_attr(not(feature = "stores"), allow(dead_code))] // only the SQLite store pages by cursor
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) time_ms: i64,
    pub(crate) row: i64,
}

/// Version tag, so a future cursor layout can be told apart from this one.
const PREFIX: &str = "c1";

#[cfg_attr(not(feature = "stores"), allow(dead_code))] // only the SQLite store pages by cursor
impl Position {
    /// `c1` + 16 hex digits of the time + 16 hex digits of the row.
    pub(crate) fn encode(self) -> String {
        // Two's-complement bits, so times before 1970 round-trip too.
        format!(
            "{PREFIX}{:016x}{:016x}",
            self.time_ms as u64, self.row as u64
        )
    }

    pub(crate) fn decode(cursor: &str) -> Result<Position> {
        let body = cursor.strip_prefix(PREFIX).ok_or(Error::InvalidCursor {
            reason: "unknown format",
        })?;
        if body.len() != 32 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidCursor {
                reason: "expected 32 hexadecimal digits after the version",
            });
        }
        let part = |range: std::ops::Range<usize>| -> Result<i64> {
            let digits = body.get(range).ok_or(Error::InvalidCursor {
                reason: "truncated",
            })?;
            u64::from_str_radix(digits, 16)
                .map(|bits| bits as i64)
                .map_err(|_| Error::InvalidCursor {
                    reason: "not hexadecimal",
                })
        };
        let time_ms = part(0..16)?;
        let row = part(16..32)?;
        if Timestamp::from_unix_millis(time_ms).is_err() {
            return Err(Error::InvalidCursor {
                reason: "time out of range",
            });
        }
        if row <= 0 {
            return Err(Error::InvalidCursor {
                reason: "row out of range",
            });
        }
        Ok(Position { time_ms, row })
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        for p in [
            Position { time_ms: 0, row: 1 },
            Position {
                time_ms: -5,
                row: i64::MAX,
            },
            Position {
                time_ms: 1_700_000_000_123,
                row: 42,
            },
        ] {
            assert_eq!(Position::decode(&p.encode()).unwrap(), p);
        }
        for bad in [
            "",
            "c1",
            "xx00000000000000000000000000000001",
            "c1000000000000000000000000000000012",
            "c10000000000000000000000000000000g",
            "c1+0000000000000000000000000000001",
            "c17fffffffffffffff0000000000000001",
            "c100000000000000000000000000000000",
            "c1éééééééééééééééé",
        ] {
            assert!(
                matches!(Position::decode(bad), Err(Error::InvalidCursor { .. })),
                "{bad:?}"
            );
        }
    }
}
