//! Package-string splitting (reference §3.5): `"foo bar"` is two packages,
//! `"corge 'quuz >= 1.0'"` is `corge` and `quuz >= 1.0`.
//!
//! Hand-written: shell-word crates also interpret double quotes and
//! backslashes, which rpm-ostree does not.

/// Split on whitespace; text between a pair of single quotes is one token,
/// taken verbatim (quotes removed). Quotes pair up left to right wherever they
/// appear (`a'b c'd` is `a`, `b c`, `d`, as in rpm-ostree); an odd number of
/// quotes is an error.
pub fn split_whitespace_unless_quoted(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut quoted = false;
    for (n, segment) in s.split('\'').enumerate() {
        quoted = n % 2 == 1;
        if quoted {
            out.push(segment.to_string());
        } else {
            out.extend(segment.split_whitespace().map(str::to_string));
        }
    }
    if quoted {
        return Err(format!("Missing terminating quote: {s}"));
    }
    Ok(out)
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
        ok(
            "'foobar >= 1.0' 'quuz < 0.5' 'corge > 2'",
            &["foobar >= 1.0", "quuz < 0.5", "corge > 2"],
        );
        ok(
            "corge 'foobar >= 1.1' baz-package 'quuz < 0.0.1'",
            &["corge", "foobar >= 1.1", "baz-package", "quuz < 0.0.1"],
        );
        ok("a'b c'd", &["a", "b c", "d"]);
        ok("'foo'bar", &["foo", "bar"]);
        ok("''", &[""]);
        for bad in ["'foo", "foo'", "fo'o", "'foo' 'bar"] {
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
