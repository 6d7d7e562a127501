//! The parts of a tracking search every front-end reads the same way (CLI, API,
//! console): times given relative to now or absolute.

use time::OffsetDateTime;

/// Why a time in a search does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimeError(String);

/// `-10m`, `-2h`, `-1d`, `-30s` relative to `now`, or an RFC 3339 timestamp.
pub fn parse_time(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, TimeError> {
    if let Some(rel) = text.strip_prefix('-') {
        // The unit is the last character (split on a character boundary: any text may come here).
        let unit_at = rel.char_indices().last().map_or(0, |(i, _)| i);
        let (number, unit) = rel.split_at(unit_at);
        let n: i64 = number.parse().map_err(|_| TimeError(format!("{text:?}: expected e.g. -10m, -2h or -1d")))?;
        let unit_seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(TimeError(format!("{text:?}: unit must be s, m, h or d"))),
        };
        let out_of_range = || TimeError(format!("{text:?} is too far in the past"));
        let seconds = n.checked_mul(unit_seconds).ok_or_else(out_of_range)?;
        return now.checked_sub(time::Duration::seconds(seconds)).ok_or_else(out_of_range);
    }
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| TimeError(format!("{text:?} is neither a relative time (-10m) nor RFC 3339")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn relative_and_absolute_times() {
        let now = datetime!(2026-11-28 12:00 UTC);
        assert_eq!(parse_time("-10m", now).unwrap(), datetime!(2026-11-28 11:50 UTC));
        assert_eq!(parse_time("-1d", now).unwrap(), datetime!(2026-11-27 12:00 UTC));
        assert_eq!(parse_time("2026-11-28T10:00:00Z", now).unwrap(), datetime!(2026-11-28 10:00 UTC));
        assert!(parse_time("-10x", now).is_err());
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("-99999999999999999d", now).unwrap_err().to_string().contains("too far"));
        assert!(parse_time("-ü", now).is_err(), "a unit that is not ASCII");
    }
}
