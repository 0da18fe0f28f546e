//! Timestamps as the database stores them: UTC text of one fixed width
//! (`2025-11-25T18:33:07.125Z`), so that SQL users read them directly, `ORDER BY` and `<`
//! compare them correctly as text, and no date library is needed on either side.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now. A clock before 1970 counts as 1970.
pub fn now_millis() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The current time as stored in the database.
pub fn now() -> String {
    format_millis(now_millis())
}

/// Formats milliseconds since the Unix epoch (clamped to years 1970–9999).
pub fn format_millis(millis: i64) -> String {
    const MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let millis = millis.clamp(0, MAX);
    let (days, in_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// Parses the stored form back to milliseconds since the Unix epoch; `None` for anything else
/// (a hand-edited row, say), so callers show a blank rather than fail.
pub fn parse_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let field = |from: usize, to: usize| text.get(from..to)?.parse::<i64>().ok();
    let (year, month, day) = (field(0, 4)?, field(5, 7)?, field(8, 10)?);
    let (hour, minute, second, milli) = (field(11, 13)?, field(14, 16)?, field(17, 19)?, field(20, 23)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

/// Seconds from `start` to `end` (both stored timestamps), when both parse.
pub fn seconds_between(start: &str, end: &str) -> Option<f64> {
    Some((parse_millis(end)? - parse_millis(start)?) as f64 / 1000.0)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`, counting in 400-year eras of 146 097 days).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_and_parse() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_764_095_587_125, "2025-11-25T18:33:07.125Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
        ];
        for (millis, text) in cases {
            assert_eq!(format_millis(millis), text);
            assert_eq!(parse_millis(text), Some(millis), "{text}");
        }
    }

    #[test]
    fn every_day_round_trips_and_text_order_is_time_order() {
        let mut previous = String::new();
        for day in (0..200_000).step_by(7) {
            let millis = day * 86_400_000 + 12_345_678;
            let text = format_millis(millis);
            assert_eq!(parse_millis(&text), Some(millis));
            assert!(text > previous);
            previous = text;
        }
    }

    #[test]
    fn malformed_text_is_none() {
        for text in [
            "",
            "2025-11-25",
            "2025-13-01T00:00:00.000Z",
            "2025-11-25 18:33:07.125Z",
            "abcd-11-25T18:33:07.125Z",
        ] {
            assert_eq!(parse_millis(text), None, "{text}");
        }
    }
}
