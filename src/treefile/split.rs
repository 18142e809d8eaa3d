//! Package-string splitting (reference §3.5): `"foo bar"` is two packages,
//! `"corge 'quuz >= 1.0'"` is `corge` and `quuz >= 1.0`.
//!
//! Hand-written: shell-word crates also interpret double quotes and
//! backslashes, which rpm-ostree does not.

/// Split on whitespace; a single-quoted segment is one token (quotes removed).
/// A quote that does not start a token, or an unterminated one, is an error.
pub fn split_whitespace_unless_quoted(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(out);
        }
        if let Some(after) = rest.strip_prefix('\'') {
            let end = after
                .find('\'')
                .ok_or_else(|| format!("Missing terminating quote: {s}"))?;
            let token = &after[..end];
            let tail = &after[end + 1..];
            if !(tail.is_empty() || tail.starts_with(char::is_whitespace)) {
                return Err(format!("Missing whitespace after closing quote: {s}"));
            }
            out.push(token.to_string());
            rest = tail;
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let token = &rest[..end];
            if token.contains('\'') {
                return Err(format!("Missing terminating quote: {s}"));
            }
            out.push(token.to_string());
            rest = &rest[end..];
        }
    }
}

/// Split every entry of a package list.
pub fn split_all<'a>(items: impl IntoIterator<Item = &'a String>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in items {
        out.extend(split_whitespace_unless_quoted(item)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cases() {
        let ok = |s: &str, v: &[&str]| {
            assert_eq!(split_whitespace_unless_quoted(s).unwrap(), v, "input {s:?}")
        };
        ok("", &[]);
        ok("   ", &[]);
        ok("foo", &["foo"]);
        ok("foo bar", &["foo", "bar"]);
        ok("  foo \t bar  ", &["foo", "bar"]);
        ok("'foo'", &["foo"]);
        ok("'foo bar'", &["foo bar"]);
        ok("corge 'quuz >= 1.0'", &["corge", "quuz >= 1.0"]);
        ok("'a b' c 'd'", &["a b", "c", "d"]);
        ok("'skopeo >= 2:1.7.0'", &["skopeo >= 2:1.7.0"]);
        for bad in ["'foo", "foo'", "fo'o", "'foo' 'bar", "'foo'bar"] {
            assert!(split_whitespace_unless_quoted(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn plain_words_split_like_split_whitespace(s in "[a-z0-9 \t<>=.-]{0,40}") {
            let expect: Vec<String> = s.split_whitespace().map(String::from).collect();
            prop_assert_eq!(split_whitespace_unless_quoted(&s).unwrap(), expect);
        }

        #[test]
        fn quoted_token_roundtrips(words in proptest::collection::vec("[a-z0-9<>= .]{1,12}", 0..5)) {
            let words: Vec<String> = words.into_iter().map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty()).collect();
            let joined = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
            prop_assert_eq!(split_whitespace_unless_quoted(&joined).unwrap(), words);
        }

        #[test]
        fn never_panics(s in ".*") {
            let _ = split_whitespace_unless_quoted(&s);
        }
    }
}
