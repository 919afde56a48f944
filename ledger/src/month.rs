//! Calendar months (UTC) as the statements name them: `YYYY-MM`, parsed at the boundary.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::statement::Month;

/// Why a month's text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a month: write YYYY-MM, e.g. 2026-11")]
pub struct MonthError(pub String);

impl Month {
    /// The month holding `at_ms` (Unix ms, UTC).
    pub fn of(at_ms: u64) -> Self {
        let t = Utc
            .timestamp_millis_opt(i64::try_from(at_ms).unwrap_or(i64::MAX))
            .single()
            .unwrap_or_default();
        Self {
            year: t.year(),
            month: t.month(),
        }
    }

    /// The first instant of the month, Unix ms.
    pub fn start_ms(self) -> u64 {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_millis().max(0) as u64)
            .unwrap_or(0)
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first instant after the month, Unix ms.
    pub fn end_ms(self) -> u64 {
        self.next().start_ms()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MonthError(s.to_owned());
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_print_and_bound_their_instants() {
        let nov: Month = "2026-11".parse().expect("month");
        assert_eq!(nov.to_string(), "2026-11");
        assert_eq!(nov.next().to_string(), "2026-12");
        assert_eq!(
            "2026-12"
                .parse::<Month>()
                .map(Month::next)
                .map(|m| m.to_string()),
            Ok("2027-01".into())
        );
        assert_eq!(Month::of(nov.start_ms()), nov);
        assert_eq!(Month::of(nov.end_ms() - 1), nov);
        assert_eq!(nov.end_ms() - nov.start_ms(), 30 * 86_400_000);
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-00"] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }
}
