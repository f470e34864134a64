//! Naming a node's URL in messages without its secrets.

/// `url` with its credentials and query removed, for messages: `redis://user:pw@host:6379/0`
/// becomes `redis://***@host:6379/0`, `redis+unix:///run/redis.sock?pass=pw` becomes
/// `redis+unix:///run/redis.sock?***`. Works on malformed URLs too, which is when a driver
/// most needs to say which URL it means.
///
/// # Examples
///
/// ```
/// use redlock_core::redact_url;
///
/// assert_eq!(redact_url("redis://:hunter2@10.0.0.1:6379/"), "redis://***@10.0.0.1:6379/");
/// assert_eq!(redact_url("redis://10.0.0.1:notaport/"), "redis://10.0.0.1:notaport/");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    // Credentials end at the last `@`: a password may hold `/`, `?` or `#` itself.
    let (hidden, rest) = match rest.rsplit_once('@') {
        Some((_, host)) => ("***@", host),
        None => ("", rest),
    };
    let (rest, query) = match rest.split_once(['?', '#']) {
        Some((before, _)) => (before, "?***"),
        None => (rest, ""),
    };
    format!("{scheme}{hidden}{rest}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_queries_never_survive() {
        let cases = [
            ("redis://user:s3cret@host:6379/0", "redis://***@host:6379/0"),
            ("rediss://:s3cret@host", "rediss://***@host"),
            ("redis://host:6379", "redis://host:6379"),
            (
                "redis+unix:///run/r.sock?db=1&pass=s3cret",
                "redis+unix:///run/r.sock?***",
            ),
            ("redis://us@er:s3cret@host/", "redis://***@host/"),
            ("not a url s3cret@x", "***@x"),
            ("redis://host/#s3cret", "redis://host/?***"),
            ("redis://:ab/s3cret@host:6379/", "redis://***@host:6379/"),
            ("redis://:ab?s3cret@host/", "redis://***@host/"),
            ("redis://u:ab#s3cret@host", "redis://***@host"),
            ("", ""),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            assert!(!redact_url(url).contains("s3cret"));
        }
    }
}
