//! What the headers of an `http` response say about sharing and keeping
//! it: `Set-Cookie`, `Cache-Control` (`private`, `no-store`, `no-cache`,
//! `max-age`, `s-maxage`), `Age` and `Vary`. Read without allocating.

use std::time::Duration;

use http::header::{AGE, CACHE_CONTROL, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderName, StatusCode};

/// `true` when a response with these `headers` may be handed to requests
/// other than the one that made it: it sets no cookie, is neither
/// `private` nor `no-store`, and varies on no header but those the key
/// holds (`keyed`, plus `Host`, always keyed).
pub(super) fn shareable(headers: &HeaderMap, keyed: &[HeaderName]) -> bool {
    if headers.contains_key(SET_COOKIE) {
        return false;
    }
    let private = cache_control(headers).any(|(name, _)| {
        name.eq_ignore_ascii_case(b"private") || name.eq_ignore_ascii_case(b"no-store")
    });
    if private {
        return false;
    }
    headers
        .get_all(VARY)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(trim)
        .filter(|name| !name.is_empty())
        .all(|name| {
            name.eq_ignore_ascii_case(b"host")
                || keyed
                    .iter()
                    .any(|k| k.as_str().as_bytes().eq_ignore_ascii_case(name))
        })
}

/// How long a shared cache may keep a response with these `headers`:
/// `None` when they say nothing; zero for `no-cache` (it may not be
/// reused unchecked), for an invalid `max-age` and when its `Age` is past
/// it. `s-maxage` wins over `max-age` (this is a shared cache); of
/// several values, the shortest.
pub(super) fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None::<u64>;
    let mut s_maxage = None::<u64>;
    for (name, value) in cache_control(headers) {
        let slot = if name.eq_ignore_ascii_case(b"s-maxage") {
            &mut s_maxage
        } else if name.eq_ignore_ascii_case(b"max-age") {
            &mut max_age
        } else if name.eq_ignore_ascii_case(b"no-cache") {
            return Some(Duration::ZERO);
        } else {
            continue;
        };
        let seconds = value.and_then(delta_seconds).unwrap_or(0);
        *slot = Some(slot.map_or(seconds, |s| s.min(seconds)));
    }
    let lifetime = s_maxage.or(max_age)?;
    let age = match headers.get(AGE) {
        None => 0,
        // An age that cannot be read: assume the worst.
        Some(age) => delta_seconds(age.as_bytes()).unwrap_or(u64::MAX),
    };
    Some(Duration::from_secs(lifetime.saturating_sub(age)))
}

/// `true` for the statuses a cache may keep without being told how long
/// (RFC 9111 §4.2.2, "heuristically cacheable" in RFC 9110 §15.1): 200,
/// 203, 204, 206, 300, 301, 308, 404, 405, 410, 414 and 501. Any other
/// (a 429, a 401, a 302, a 503…) is kept only with an explicit `max-age`
/// or `s-maxage`.
pub(super) fn cacheable_by_default(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Every directive of every `Cache-Control` line: its name, and its value
/// unquoted (escapes left as they are), in order.
fn cache_control(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .flat_map(|value| Directives {
            rest: value.as_bytes(),
        })
}

/// A number of seconds: digits only (optionally quoted), saturating at
/// `u64::MAX`; `None` if it is not one.
fn delta_seconds(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0_u64, |n, digit| {
        n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
    }))
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The directives of one `Cache-Control` line: `name[=token]` or
/// `name="quoted, string"`, separated by commas.
struct Directives<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Directives<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let is_space = |b: &u8| matches!(b, b' ' | b'\t');
        loop {
            let start = self.rest.iter().position(|b| !is_space(b) && *b != b',')?;
            let rest = &self.rest[start..];
            let end = rest
                .iter()
                .position(|b| is_space(b) || matches!(b, b'=' | b','))
                .unwrap_or(rest.len());
            let (name, mut rest) = rest.split_at(end);
            rest = trim(rest);
            let mut value = None;
            if let [b'=', after @ ..] = rest {
                let after = trim(after);
                if let [b'"', quoted @ ..] = after {
                    // To the closing quote that is not escaped.
                    let mut escaped = false;
                    let close = quoted
                        .iter()
                        .position(|&b| {
                            let close = !escaped && b == b'"';
                            escaped = !escaped && b == b'\\';
                            close
                        })
                        .unwrap_or(quoted.len());
                    value = Some(&quoted[..close]);
                    rest = quoted.get(close + 1..).unwrap_or_default();
                } else {
                    let end = after
                        .iter()
                        .position(|b| is_space(b) || *b == b',')
                        .unwrap_or(after.len());
                    value = Some(&after[..end]);
                    rest = &after[end..];
                }
            }
            // Whatever else is there, up to the next comma, is not ours.
            let next = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            self.rest = &rest[next..];
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::{ACCEPT_ENCODING, AUTHORIZATION};

    use super::*;

    fn with(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name.clone(), HeaderValue::from_static(value));
        }
        headers
    }

    fn directives(line: &'static str) -> Vec<(String, Option<String>)> {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        Directives {
            rest: line.as_bytes(),
        }
        .map(|(name, value)| (text(name), value.map(text)))
        .collect()
    }

    #[test]
    fn directives_are_split_on_commas_outside_quoted_strings() {
        let d = |name: &str, value: Option<&str>| (name.to_owned(), value.map(str::to_owned));
        assert_eq!(
            directives(r#"PRIVATE="set-cookie, x", max-age = 60 ,, no-cache,s-maxage="5""#),
            vec![
                d("PRIVATE", Some("set-cookie, x")),
                d("max-age", Some("60")),
                d("no-cache", None),
                d("s-maxage", Some("5")),
            ]
        );
        assert_eq!(
            directives(r#"a="q\"uote, still", b"#),
            vec![d("a", Some(r#"q\"uote, still"#)), d("b", None)]
        );
        assert_eq!(
            directives(r#"=x, "unterminated"#),
            vec![d("\"unterminated", None)]
        );
        assert_eq!(directives(""), vec![]);
    }

    #[test]
    fn private_and_no_store_in_any_case_and_position_are_not_shareable() {
        for line in [
            "private",
            "no-cache, private",
            "Private",
            r#"PRIVATE="x""#,
            "max-age=60,no-store",
            "public, NO-STORE",
        ] {
            assert!(!shareable(&with(&[(CACHE_CONTROL, line)]), &[]), "{line}");
        }
        let split = with(&[(CACHE_CONTROL, "public"), (CACHE_CONTROL, "private")]);
        assert!(!shareable(&split, &[]), "a second line counts too");
        for line in [
            "public, max-age=60",
            "no-cache",
            r#"x="private""#,
            "privately",
        ] {
            assert!(shareable(&with(&[(CACHE_CONTROL, line)]), &[]), "{line}");
        }
    }

    #[test]
    fn a_cookie_or_a_vary_on_a_header_not_keyed_is_not_shareable() {
        assert!(!shareable(&with(&[(SET_COOKIE, "session=1")]), &[]));
        assert!(!shareable(&with(&[(VARY, "*")]), &[ACCEPT_ENCODING]));
        assert!(!shareable(&with(&[(VARY, "Accept-Encoding")]), &[]));
        let keyed = [AUTHORIZATION, ACCEPT_ENCODING];
        assert!(shareable(
            &with(&[(VARY, "accept-encoding, Authorization , host")]),
            &keyed
        ));
        assert!(!shareable(
            &with(&[(VARY, "Accept-Encoding, Accept-Language")]),
            &keyed
        ));
        assert!(!shareable(
            &with(&[(VARY, "accept-encoding"), (VARY, "*")]),
            &keyed
        ));
        assert!(
            shareable(&with(&[(VARY, "Host")]), &[]),
            "host is always keyed"
        );
    }

    #[test]
    fn max_age_reads_s_maxage_first_and_saturates() {
        let age = |pairs: &[(HeaderName, &'static str)]| max_age(&with(pairs));
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(age(&[]), None);
        assert_eq!(age(&[(CACHE_CONTROL, "public")]), None);
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=60")]), secs(60));
        assert_eq!(age(&[(CACHE_CONTROL, r#"Max-Age="60""#)]), secs(60));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=60, s-maxage=5")]), secs(5));
        assert_eq!(age(&[(CACHE_CONTROL, "s-maxage=90, max-age=5")]), secs(90));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=60, max-age=7")]), secs(7));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=0")]), secs(0));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=soon")]), secs(0));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age")]), secs(0));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=60, no-cache")]), secs(0));
        assert_eq!(
            age(&[(CACHE_CONTROL, "max-age=99999999999999999999999999999")]),
            secs(u64::MAX)
        );
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=60"), (AGE, "45")]), secs(15));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=60"), (AGE, "600")]), secs(0));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=60"), (AGE, "old")]), secs(0));
    }
}
