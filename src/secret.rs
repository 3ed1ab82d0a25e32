//! A string that never prints itself: app secrets and access tokens.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to the value: call sites that send it to WeChat.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces the values of secret query parameters in a URL or message.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    const KEYS: [&str; 5] = [
        "access_token=",
        "secret=",
        "appsecret=",
        "component_access_token=",
        "refresh_token=",
    ];
    'outer: while !rest.is_empty() {
        for k in KEYS {
            if rest.starts_with(k) {
                out.push_str(k);
                out.push_str("***");
                let end = rest[k.len()..]
                    .find(['&', ' ', '"', ')', '\''])
                    .map(|i| i + k.len())
                    .unwrap_or(rest.len());
                rest = &rest[end..];
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("abc123");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn redacts_query_values() {
        let r =
            redact("error sending request for url (http://h/datacube/x?access_token=TOK123&a=1)");
        assert!(!r.contains("TOK123"), "{r}");
        assert!(r.contains("access_token=***&a=1"), "{r}");
        assert_eq!(redact("secret=s3cr3t"), "secret=***");
    }
}
