//! Which extended attributes a commit keeps, and reading them from disk.
//!
//! Kept from disk: `security.capability`, `user.pax.flags`, and `user.ima`
//! stored as `security.ima` (SELinux labels come from the policy, not from
//! the build host). Files checked out (hardlinked) from a bare-user repository
//! carry their real ownership, mode and xattrs in `user.ostreemeta`; those are
//! used instead (minus `security.selinux`).
//!
//! Not for: SELinux labeling (libostree does it from the policy).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use ostree::glib::{Variant, VariantTy};

/// An extended attribute: name (without NUL) and value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// All xattrs of `path` (not following symlinks), sorted by name. A
/// filesystem without xattr support yields none.
pub fn read_xattrs(path: &Path) -> Result<Vec<Xattr>> {
    let mut out = Vec::new();
    for name in read_xattr_names(path)? {
        if let Some(value) = read_xattr(path, &name)? {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

/// The names of the xattrs of `path` (not following symlinks); none on a
/// filesystem without xattr support.
pub(super) fn read_xattr_names(path: &Path) -> Result<Vec<Vec<u8>>> {
    use rustix::io::Errno;
    let unsupported = |e: Errno| e == Errno::NOTSUP || e == Errno::OPNOTSUPP;
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(e) if e == Errno::RANGE => {
                let need = rustix::fs::llistxattr(path, &mut [])
                    .with_context(|| format!("Listing xattrs of {}", path.display()))?;
                names.resize(need.max(names.len() * 2), 0);
            }
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("Listing xattrs of {}", path.display()))
            }
        }
    };
    Ok(names[..len]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| n.to_vec())
        .collect())
}

/// One xattr's value; `None` if it does not exist.
fn read_xattr(path: &Path, name: &[u8]) -> Result<Option<Vec<u8>>> {
    use rustix::io::Errno;
    let cname = std::ffi::CString::new(name).context("xattr name contains a NUL byte")?;
    let shown = || {
        format!(
            "Reading xattr {} of {}",
            String::from_utf8_lossy(name),
            path.display()
        )
    };
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, cname.as_c_str(), &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if e == Errno::RANGE => {
                let need =
                    rustix::fs::lgetxattr(path, cname.as_c_str(), &mut []).with_context(shown)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(e) if e == Errno::NODATA || e == Errno::NOTSUP || e == Errno::OPNOTSUPP => {
                return Ok(None)
            }
            Err(e) => return Err(e).with_context(shown),
        }
    }
}

/// Ownership, mode and xattrs that a bare-user repository recorded for a
/// checked-out file (`user.ostreemeta`, GVariant `(uuua(ayay))`, numbers big-endian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OstreeMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub xattrs: Vec<Xattr>,
}

pub(super) const OSTREEMETA: &[u8] = b"user.ostreemeta";

pub(super) fn read_ostreemeta(path: &Path) -> Result<Option<OstreeMeta>> {
    match read_xattr(path, OSTREEMETA)? {
        None => Ok(None),
        Some(bytes) => parse_ostreemeta(&bytes)
            .map(Some)
            .with_context(|| format!("Parsing user.ostreemeta of {}", path.display())),
    }
}

/// Parse the value of a `user.ostreemeta` xattr.
pub fn parse_ostreemeta(bytes: &[u8]) -> Result<OstreeMeta> {
    let ty = VariantTy::new("(uuua(ayay))").context("invalid GVariant type string")?;
    let v = Variant::from_data_with_type(bytes, ty);
    if !v.is_normal_form() {
        anyhow::bail!("not a valid (uuua(ayay)) GVariant");
    }
    let (uid, gid, mode, xattrs): (u32, u32, u32, Vec<Xattr>) = v
        .get()
        .ok_or_else(|| anyhow!("not a (uuua(ayay)) GVariant"))?;
    let xattrs = xattrs
        .into_iter()
        .map(|(mut k, v)| {
            if k.last() == Some(&0) {
                k.pop();
            }
            (k, v)
        })
        .collect();
    Ok(OstreeMeta {
        uid: u32::from_be(uid),
        gid: u32::from_be(gid),
        mode: u32::from_be(mode),
        xattrs,
    })
}

/// The xattrs to commit for a file: those recorded in `user.ostreemeta` minus
/// `security.selinux`, else the on-disk ones filtered by [`filter_xattrs`].
pub(super) fn kept_xattrs(path: &Path) -> Result<Vec<Xattr>> {
    if let Some(meta) = read_ostreemeta(path)? {
        let mut list: Vec<Xattr> = meta
            .xattrs
            .into_iter()
            .filter(|(k, _)| k.as_slice() != b"security.selinux")
            .collect();
        list.sort();
        return Ok(list);
    }
    Ok(filter_xattrs(read_xattrs(path)?))
}

/// Keep `security.capability` and `user.pax.flags`; rename `user.ima` to
/// `security.ima`; drop everything else (SELinux labels come from the policy).
pub fn filter_xattrs(list: Vec<Xattr>) -> Vec<Xattr> {
    let mut kept: Vec<Xattr> = list
        .into_iter()
        .filter_map(|(k, v)| match k.as_slice() {
            b"security.capability" | b"user.pax.flags" => Some((k, v)),
            b"user.ima" => Some((b"security.ima".to_vec(), v)),
            _ => None,
        })
        .collect();
    kept.sort();
    kept
}

/// The `a(ayay)` variant OSTree expects from an xattr callback (names with a trailing NUL).
pub(crate) fn xattrs_to_variant(list: &[Xattr]) -> Variant {
    let children = list.iter().map(|(k, v)| {
        let mut name = k.clone();
        name.push(0);
        Variant::tuple_from_iter([
            Variant::array_from_fixed_array(&name),
            Variant::array_from_fixed_array(v),
        ])
    });
    let ty = VariantTy::new("(ayay)").expect("(ayay) is a valid GVariant type");
    Variant::array_from_iter_with_type(ty, children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostree::glib::ToVariant;

    #[test]
    fn xattr_filter() {
        let list = vec![
            (b"user.foo".to_vec(), b"1".to_vec()),
            (b"security.selinux".to_vec(), b"x".to_vec()),
            (b"user.ima".to_vec(), b"sig".to_vec()),
            (b"security.capability".to_vec(), b"cap".to_vec()),
        ];
        assert_eq!(
            filter_xattrs(list),
            vec![
                (b"security.capability".to_vec(), b"cap".to_vec()),
                (b"security.ima".to_vec(), b"sig".to_vec()),
            ]
        );
    }

    #[test]
    fn xattr_variant_has_nul_terminated_names() {
        let v = xattrs_to_variant(&[(b"a.b".to_vec(), vec![1, 2])]);
        assert_eq!(v.type_().as_str(), "a(ayay)");
        assert_eq!(v.print(false).as_str(), "[(b'a.b', [0x01, 0x02])]");
        assert_eq!(xattrs_to_variant(&[]).n_children(), 0);
    }

    #[test]
    fn ostreemeta_parse() {
        let xattrs = vec![(b"security.capability\0".to_vec(), vec![9u8])];
        let v = (900u32.to_be(), 901u32.to_be(), 0o104755u32.to_be(), xattrs).to_variant();
        let meta = parse_ostreemeta(v.data()).unwrap();
        assert_eq!((meta.uid, meta.gid, meta.mode), (900, 901, 0o104755));
        assert_eq!(
            meta.xattrs,
            vec![(b"security.capability".to_vec(), vec![9u8])]
        );
        assert!(parse_ostreemeta(b"\x01").is_err());
    }
}
