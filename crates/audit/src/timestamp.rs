//! Event times: UTC, millisecond precision.
//!
//! Millis because that is what the JSON shows (`2026-11-22T14:09:06.123Z`, like Teleport)
//! and what the SQLite store indexes; finer precision would make the JSON and the index
//! disagree about ordering.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Error, Result};

/// Milliseconds since the Unix epoch, UTC; always within years 0000..=9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the range RFC 3339 can write.
const MIN_MILLIS: i64 = -62_167_219_200_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// The current wall-clock time. Tests pass explicit times through
    /// [`crate::AuditEvent::at`] instead.
    pub fn now() -> Timestamp {
        let millis = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        Timestamp(
            i64::try_from(millis)
                .unwrap_or(MAX_MILLIS)
                .clamp(MIN_MILLIS, MAX_MILLIS),
        )
    }

    pub fn from_unix_millis(millis: i64) -> Result<Timestamp> {
        if (MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
            Ok(Timestamp(millis))
        } else {
            Err(Error::InvalidTime {
                input: millis.to_string(),
                reason: "outside years 0000..=9999".into(),
            })
        }
    }

    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 with any offset; sub-millisecond digits are truncated.
    pub fn parse_rfc3339(input: &str) -> Result<Timestamp> {
        let parsed = OffsetDateTime::parse(input, &Rfc3339).map_err(|e| Error::InvalidTime {
            input: input.into(),
            reason: e.to_string(),
        })?;
        let millis = parsed.unix_timestamp_nanos().div_euclid(1_000_000);
        let millis = i64::try_from(millis).map_err(|_| Error::InvalidTime {
            input: input.into(),
            reason: "out of range".into(),
        })?;
        Timestamp::from_unix_millis(millis).map_err(|_| Error::InvalidTime {
            input: input.into(),
            reason: "outside years 0000..=9999".into(),
        })
    }

    /// Adds (or subtracts) milliseconds, saturating at the representable range.
    pub fn saturating_add_millis(self, millis: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis).clamp(MIN_MILLIS, MAX_MILLIS))
    }

    fn datetime(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).ok()
    }

    /// The UTC date as `YYYY-MM-DD`: the name of the daily JSON-lines file.
    pub fn utc_date(self) -> String {
        match self.datetime() {
            Some(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
            // Unreachable: the constructor keeps the value in range.
            None => "0000-01-01".into(),
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC, exactly three fractional digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.datetime() {
            Some(t) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            ),
            None => write!(f, "@{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
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
    fn formats_with_millis_and_parses_back() {
        let t = Timestamp::from_unix_millis(1_700_000_000_123).unwrap();
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()).unwrap(), t);
        assert_eq!(t.utc_date(), "2023-11-14");
    }

    #[test]
    fn parses_offsets_and_truncates_nanos() {
        let t = Timestamp::parse_rfc3339("2023-11-15T00:13:20.123999+02:00").unwrap();
        assert_eq!(t.unix_millis(), 1_700_000_000_123);
        let before_epoch = Timestamp::parse_rfc3339("1969-12-31T23:59:59.9995Z").unwrap();
        assert_eq!(before_epoch.unix_millis(), -1);
        assert_eq!(before_epoch.to_string(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rejects_garbage_and_out_of_range() {
        assert!(matches!(
            Timestamp::parse_rfc3339("yesterday"),
            Err(Error::InvalidTime { .. })
        ));
        assert!(Timestamp::from_unix_millis(i64::MAX).is_err());
        assert!(Timestamp::from_unix_millis(MAX_MILLIS).is_ok());
        assert_eq!(
            Timestamp::from_unix_millis(0)
                .unwrap()
                .saturating_add_millis(i64::MAX)
                .unix_millis(),
            MAX_MILLIS
        );
    }
}
