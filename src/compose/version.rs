//! Automatic versioning from `automatic-version-prefix` (rpm-ostree's rules).
//!
//! Pure: given the prefix, the suffix character, the previous version and the
//! current time, compute the next version. Not for reading commits (the
//! caller passes the previous version in).

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};

/// Expand `<date:FMT>` tags in `prefix` with `now` (strftime formats).
/// Returns the expanded prefix and whether any date tag was present.
/// Unknown `<tag:...>` forms are left as written (with a warning).
pub fn expand_date_tags(prefix: &str, now: DateTime<Utc>) -> Result<(String, bool)> {
    let mut out = String::new();
    let mut rest = prefix;
    let mut had_date = false;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = after.find('>') else {
            out.push_str(after);
            rest = "";
            break;
        };
        let tag = &after[1..end];
        if let Some(fmt) = tag.strip_prefix("date:") {
            out.push_str(&format_date(fmt, now)?);
            had_date = true;
        } else {
            if tag.contains(':') {
                eprintln!("warning: unknown tag <{tag}> in automatic-version-prefix left as is");
            }
            out.push_str(&after[..=end]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, had_date))
}

fn format_date(fmt: &str, now: DateTime<Utc>) -> Result<String> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item> = StrftimeItems::new(fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(crate::exit::invalid_input(format!(
            "automatic-version-prefix: invalid date format '<date:{fmt}>'; use strftime codes such as %Y%m%d"
        )));
    }
    Ok(now.format_with_items(items.into_iter()).to_string())
}

/// The next version after `last` for `prefix` (already date-expanded) and
/// suffix character `suffix`; `date_tag` says whether the prefix had a date tag.
pub fn next_version_expanded(
    prefix: &str,
    suffix: char,
    last: Option<&str>,
    date_tag: bool,
) -> String {
    let start_over = || {
        if date_tag {
            format!("{prefix}{suffix}0")
        } else {
            prefix.to_string()
        }
    };
    let Some(last) = last else {
        return start_over();
    };
    let Some(after) = last.strip_prefix(prefix) else {
        return start_over();
    };
    if after.is_empty() {
        return if date_tag {
            format!("{prefix}{suffix}0")
        } else {
            format!("{prefix}{suffix}1")
        };
    }
    let Some(num) = after.strip_prefix(suffix) else {
        return start_over();
    };
    let digits: String = num.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().unwrap_or(0);
    format!("{prefix}{suffix}{}", n.saturating_add(1))
}

/// The next version: expands date tags in `prefix`, then applies the increment rules.
pub fn next_version(
    prefix: &str,
    suffix: &str,
    last: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String> {
    let mut chars = suffix.chars();
    let suffix_char = match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii() => c,
        _ => {
            return Err(anyhow!(
                "automatic-version-suffix must be exactly one ASCII character, got '{suffix}'"
            ))
        }
    };
    let (expanded, date_tag) = expand_date_tags(prefix, now)?;
    Ok(next_version_expanded(
        &expanded,
        suffix_char,
        last,
        date_tag,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
    }

    #[test]
    fn version_table() {
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            ("10", ".", None, "10"),
            ("10", ".", Some(""), "10"),
            ("10", ".", Some("10"), "10.1"),
            ("10", ".", Some("10.1"), "10.2"),
            ("10", ".", Some("10.1.5"), "10.2"),
            ("10.1", ".", Some("10.1.x"), "10.1.1"),
            ("10", ".", Some("10001"), "10"),
            ("10", ".", Some("9.5"), "10"),
            ("10", "-", Some("10-1"), "10-2"),
            ("10", "-", Some("10.1"), "10"),
            (
                "10.<date:%Y%m%d>",
                ".",
                Some("10.20001010.5"),
                "10.20261122.0",
            ),
            (
                "10.<date:%Y%m%d>",
                ".",
                Some("10.20261122.5"),
                "10.20261122.6",
            ),
            ("10.<date:%Y%m%d>", ".", None, "10.20261122.0"),
            (
                "10.<date:%Y%m%d>",
                ".",
                Some("10.20261122"),
                "10.20261122.0",
            ),
            (
                "40.<date:%Y%m%d>.dev",
                ".",
                Some("40.20261122.dev.3"),
                "40.20261122.dev.4",
            ),
        ];
        for (prefix, suffix, last, want) in cases {
            assert_eq!(
                next_version(prefix, suffix, *last, now()).unwrap(),
                *want,
                "prefix {prefix} last {last:?}"
            );
        }
    }

    #[test]
    fn unknown_tags_kept() {
        let (s, date) = expand_date_tags("1.<foo:bar>.<x>", now()).unwrap();
        assert_eq!(s, "1.<foo:bar>.<x>");
        assert!(!date);
    }

    #[test]
    fn bad_suffix_rejected() {
        assert!(next_version("1", "ab", None, now()).is_err());
        assert!(next_version("1", "", None, now()).is_err());
    }

    #[test]
    fn bad_date_format_rejected() {
        let e = next_version("1.<date:%Q>", ".", None, now()).unwrap_err();
        assert!(format!("{e:#}").contains("invalid date format"));
    }
}
