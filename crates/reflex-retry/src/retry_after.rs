//! Reading `Retry-After`: seconds, or an http-date.

use std::time::{Duration, SystemTime};

/// How long a `Retry-After` value asks the client to wait, read at `now`.
///
/// Accepts whole seconds (`"120"`) or an http-date
/// (`"Sun, 06 Nov 1994 08:49:37 GMT"`; a date in the past means no wait).
/// Anything else is `None`: a malformed value is ignored, never guessed at.
/// A value too large to represent is `None` too; whether a well-formed value
/// is too long to honour is the caller's cap to decide.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use reflex_retry::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
///     Some(Duration::from_secs(10)),
/// );
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        // Sun, 06 Nov 1994 08:49:37 GMT
        SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn seconds_are_read_with_surrounding_space() {
        assert_eq!(
            parse_retry_after(" 3 ", now()),
            Some(Duration::from_secs(3))
        );
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
    }

    #[test]
    fn malformed_values_are_ignored() {
        for value in ["", " ", "-1", "1.5", "+3", "3s", "abc", "0x10", "1 2"] {
            assert_eq!(parse_retry_after(value, now()), None, "{value:?}");
        }
    }

    #[test]
    fn a_number_too_large_to_represent_is_ignored() {
        assert_eq!(parse_retry_after("99999999999999999999999", now()), None);
        assert_eq!(
            parse_retry_after("18446744073709551615", now()),
            Some(Duration::from_secs(u64::MAX)),
            "representable: the caller's cap decides"
        );
    }

    #[test]
    fn an_http_date_is_the_time_left_until_it_and_a_past_one_is_no_wait() {
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 25:00:00 GMT", now()),
            None
        );
    }
}
