//! The package difference between two commits' package lists, as the compose
//! JSON's `pkgdiff` reports it: `[[name, type, {"PreviousPackage": [name, evr,
//! arch], "NewPackage": [name, evr, arch]}], ...]` with type 0 = added,
//! 1 = removed, 2 = upgraded, 3 = downgraded, sorted by type then name.
//!
//! Matching follows rpm-ostree's "comm(1) for package lists": packages pair up
//! by name and arch; a name present once on each side with a different arch
//! counts as one modified package, while several packages of one name (multilib,
//! multi-installed kernels) pair up per arch. Pure functions, no I/O.
//!
//! Not for: reading the lists out of commits (see [`super::read`]).

use std::cmp::Ordering;

use super::metadata::PkgListEntry;

/// The kind of change, with rpm-ostree's numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum PkgChange {
    Added = 0,
    Removed = 1,
    Upgraded = 2,
    Downgraded = 3,
}

/// One line of the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkgDiffEntry {
    pub name: String,
    pub change: PkgChange,
    pub previous: Option<PkgListEntry>,
    pub new: Option<PkgListEntry>,
}

/// Compute the diff from `old` to `new` (any input order).
pub fn pkgdiff(old: &[PkgListEntry], new: &[PkgListEntry]) -> Vec<PkgDiffEntry> {
    let sorted = |list: &[PkgListEntry]| {
        let mut v: Vec<PkgListEntry> = list.to_vec();
        v.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| a.arch.cmp(&b.arch))
                .then_with(|| evr_cmp(a, b))
        });
        v
    };
    let a = sorted(old);
    let b = sorted(new);
    let single = |list: &[PkgListEntry], i: usize| {
        list.get(i + 1)
            .map_or(true, |next| next.name != list[i].name)
    };

    let mut out = Vec::new();
    let modified = |pa: &PkgListEntry, pb: &PkgListEntry| PkgDiffEntry {
        name: pa.name.clone(),
        change: if package_cmp(pa, pb) == Ordering::Greater {
            PkgChange::Downgraded
        } else {
            PkgChange::Upgraded
        },
        previous: Some(pa.clone()),
        new: Some(pb.clone()),
    };
    let removed = |p: &PkgListEntry| PkgDiffEntry {
        name: p.name.clone(),
        change: PkgChange::Removed,
        previous: Some(p.clone()),
        new: None,
    };
    let added = |p: &PkgListEntry| PkgDiffEntry {
        name: p.name.clone(),
        change: PkgChange::Added,
        previous: None,
        new: Some(p.clone()),
    };

    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (pa, pb) = (&a[i], &b[j]);
        match pa.name.cmp(&pb.name) {
            Ordering::Less => {
                out.push(removed(pa));
                i += 1;
            }
            Ordering::Greater => {
                out.push(added(pb));
                j += 1;
            }
            Ordering::Equal => match pa.arch.cmp(&pb.arch) {
                Ordering::Equal => {
                    if evr_cmp(pa, pb) != Ordering::Equal {
                        out.push(modified(pa, pb));
                    }
                    i += 1;
                    j += 1;
                }
                arch_order => {
                    if single(&a, i) && single(&b, j) {
                        // One package of this name on each side that changed arch.
                        out.push(modified(pa, pb));
                        i += 1;
                        j += 1;
                    } else if arch_order == Ordering::Less {
                        out.push(removed(pa));
                        i += 1;
                    } else {
                        out.push(added(pb));
                        j += 1;
                    }
                }
            },
        }
    }
    out.extend(a[i..].iter().map(removed));
    out.extend(b[j..].iter().map(added));
    // Stable: entries of equal type and name keep their pairing order.
    out.sort_by(|x, y| x.change.cmp(&y.change).then_with(|| x.name.cmp(&y.name)));
    out
}

/// The diff as the compose JSON `pkgdiff` array.
pub fn pkgdiff_to_json(entries: &[PkgDiffEntry]) -> serde_json::Value {
    let pkg = |p: &PkgListEntry| serde_json::json!([p.name, p.evr(), p.arch]);
    let items = entries.iter().map(|e| {
        let mut details = serde_json::Map::new();
        if let Some(p) = &e.previous {
            details.insert("PreviousPackage".into(), pkg(p));
        }
        if let Some(p) = &e.new {
            details.insert("NewPackage".into(), pkg(p));
        }
        serde_json::json!([e.name, e.change as u32, details])
    });
    serde_json::Value::Array(items.collect())
}

/// Order two packages by name, then EVR, then arch (libdnf's `dnf_package_cmp`).
pub fn package_cmp(a: &PkgListEntry, b: &PkgListEntry) -> Ordering {
    a.name
        .cmp(&b.name)
        .then_with(|| evr_cmp(a, b))
        .then_with(|| a.arch.cmp(&b.arch))
}

/// Compare epoch (numerically; empty = 0), then version and release with
/// [`rpmvercmp`].
pub fn evr_cmp(a: &PkgListEntry, b: &PkgListEntry) -> Ordering {
    let epoch = |e: &str| e.parse::<u64>().unwrap_or(0);
    epoch(&a.epoch)
        .cmp(&epoch(&b.epoch))
        .then_with(|| rpmvercmp(&a.version, &b.version))
        .then_with(|| rpmvercmp(&a.release, &b.release))
}

/// rpm's version segment comparison (`rpmvercmp`): alphanumeric segments, numbers
/// compare numerically and beat letters, `~` sorts before everything (even the
/// end), `^` sorts after the end but before any other segment.
/// Written from rpm's documented semantics, because no maintained crate offers
/// exactly this algorithm.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let is_sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && is_sep(a[i]) {
            i += 1;
        }
        while j < b.len() && is_sep(b[j]) {
            j += 1;
        }
        let ca = a.get(i).copied();
        let cb = b.get(j).copied();
        // Tilde: older than anything, including the end of the string.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // Caret: newer than the end of the string, older than any segment.
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(first), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = first.is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let seg_a_end = i + a[i..].iter().take_while(|c| class(c)).count();
        let seg_b_end = j + b[j..].iter().take_while(|c| class(c)).count();
        let seg_a = &a[i..seg_a_end];
        let seg_b = &b[j..seg_b_end];
        if seg_b.is_empty() {
            // Different segment types: numbers are newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let ord = if numeric {
            let strip = |s: &[u8]| {
                let zeros = s.iter().take_while(|c| **c == b'0').count();
                s[zeros..].to_vec()
            };
            let (na, nb) = (strip(seg_a), strip(seg_b));
            na.len().cmp(&nb.len()).then_with(|| na.cmp(&nb))
        } else {
            seg_a.cmp(seg_b)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        i = seg_a_end;
        j = seg_b_end;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    fn p(name: &str, evr: &str, arch: &str) -> PkgListEntry {
        let (epoch, vr) = match evr.split_once(':') {
            Some((e, vr)) => (e, vr),
            None => ("0", evr),
        };
        let (version, release) = vr.rsplit_once('-').unwrap_or((vr, ""));
        PkgListEntry {
            name: name.into(),
            epoch: epoch.into(),
            version: version.into(),
            release: release.into(),
            arch: arch.into(),
        }
    }

    #[test]
    fn rpmvercmp_cases_from_rpm_tests() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("a", "1", Less),
            ("1", "a", Greater),
            ("010", "10", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1", "1.01", Less),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("fc4", "fc.4", Equal),
            ("+", "_", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn diff_types_and_order() {
        let old = vec![
            p("bash", "5.1-1", "x86_64"),
            p("zlib", "1.2-1", "x86_64"),
            p("removed", "1-1", "noarch"),
            p("down", "2:1.0-1", "x86_64"),
            p("same", "1-1", "x86_64"),
            p("archchange", "1-1", "i686"),
        ];
        let new = vec![
            p("zlib", "1.3-1", "x86_64"),
            p("bash", "5.2-1", "x86_64"),
            p("added", "1-1", "noarch"),
            p("aardvark", "1-1", "noarch"),
            p("down", "1:9.0-1", "x86_64"),
            p("same", "1-1", "x86_64"),
            p("archchange", "1-1", "x86_64"),
        ];
        let diff = pkgdiff(&old, &new);
        let summary: Vec<(&str, u32)> = diff
            .iter()
            .map(|e| (e.name.as_str(), e.change as u32))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("aardvark", 0),
                ("added", 0),
                ("removed", 1),
                ("archchange", 2),
                ("bash", 2),
                ("zlib", 2),
                ("down", 3),
            ]
        );
        let json = pkgdiff_to_json(&diff);
        assert_eq!(
            json[4],
            serde_json::json!(["bash", 2, {"PreviousPackage": ["bash", "5.1-1", "x86_64"],
                                          "NewPackage": ["bash", "5.2-1", "x86_64"]}])
        );
        assert_eq!(
            json[0],
            serde_json::json!(["aardvark", 0, {"NewPackage": ["aardvark", "1-1", "noarch"]}])
        );
        assert_eq!(
            json[6][2]["PreviousPackage"],
            serde_json::json!(["down", "2:1.0-1", "x86_64"])
        );
    }

    #[test]
    fn multilib_pairs_per_arch() {
        let old = vec![p("glibc", "2.38-1", "i686"), p("glibc", "2.38-1", "x86_64")];
        let new = vec![p("glibc", "2.38-2", "x86_64")];
        let diff = pkgdiff(&old, &new);
        assert_eq!(diff.len(), 2);
        assert_eq!(diff[0].change, PkgChange::Removed);
        assert_eq!(
            diff[0].previous.as_ref().map(|p| p.arch.as_str()),
            Some("i686")
        );
        assert_eq!(diff[1].change, PkgChange::Upgraded);
    }

    #[test]
    fn identical_lists_have_no_diff() {
        let l = vec![p("a", "1-1", "x86_64"), p("b", "1-1", "x86_64")];
        assert!(pkgdiff(&l, &l).is_empty());
        assert!(pkgdiff(&[], &[]).is_empty());
        assert_eq!(pkgdiff(&[], &l).len(), 2);
    }
}
