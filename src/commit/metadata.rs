//! Commit metadata: an ordered key -> value map and its conversion to the
//! `a{sv}` GVariant that OSTree stores in a commit (or in detached metadata).
//!
//! Values are typed ([`MetaValue`]); arbitrary JSON (treefile
//! `add-commit-metadata`, `--add-metadata-from-json`) converts like json-glib's
//! `json_gvariant_deserialize(node, "a{sv}")`: integers -> `x`, floats -> `d`,
//! strings -> `s`, booleans -> `b`, arrays -> `av`, objects -> `a{sv}`,
//! null -> `mv` (nothing).
//!
//! Like rpm-ostree, the finished variant is canonicalized to **big-endian**
//! (numbers in metadata are unreadable otherwise, since a reader cannot know the
//! writer's byte order). Strings, booleans and byte arrays are unaffected; the
//! readers in [`super::read`] convert numbers back.
//!
//! Not for: deciding which keys a compose writes or their precedence (that is
//! the compose pipeline's job); this module only holds and encodes them.

use anyhow::{bail, Context, Result};
use indexmap::IndexMap;
use ostree::glib::{self, ToVariant, Variant, VariantTy};

/// Key of the commit's version string.
pub const KEY_VERSION: &str = "version";
/// Key of the input hash used for change detection.
pub const KEY_INPUTHASH: &str = "rpmostree.inputhash";
/// Key of the package list (`a(sssss)`: name, epoch, version, release, arch).
pub const KEY_PKGLIST: &str = "rpmostree.rpmdb.pkglist";
/// Key marking a bootable commit (`b`); not bound in ostree 0.19, so set by hand.
pub const KEY_BOOTABLE: &str = "ostree.bootable";
/// Key holding the kernel version of a bootable commit (`s`).
pub const KEY_LINUX: &str = "ostree.linux";
/// Key of the container command (`as`).
pub const KEY_CONTAINER_CMD: &str = ostree::COMMIT_META_CONTAINER_CMD;

/// One installed package, as stored in `rpmostree.rpmdb.pkglist`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PkgListEntry {
    pub name: String,
    /// Decimal epoch as a string (`"0"` when the package has none).
    pub epoch: String,
    pub version: String,
    pub release: String,
    pub arch: String,
}

impl PkgListEntry {
    /// `[epoch:]version-release`, the epoch only when it is not 0 (rpm's EVR form).
    pub fn evr(&self) -> String {
        if self.epoch.is_empty() || self.epoch == "0" {
            format!("{}-{}", self.version, self.release)
        } else {
            format!("{}:{}-{}", self.epoch, self.version, self.release)
        }
    }

    /// `name-[epoch:]version-release.arch`.
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name, self.evr(), self.arch)
    }
}

/// A typed metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// `s`
    Str(String),
    /// `b`
    Bool(bool),
    /// `t`
    U64(u64),
    /// `x`
    I64(i64),
    /// `d`
    F64(f64),
    /// `as`
    StrList(Vec<String>),
    /// `a(sssss)`
    PkgList(Vec<PkgListEntry>),
    /// Any JSON value, converted like json-glib does (see the module doc).
    Json(serde_json::Value),
}

impl MetaValue {
    /// The value as a native-endian GVariant.
    pub fn to_variant(&self) -> Variant {
        match self {
            MetaValue::Str(s) => s.to_variant(),
            MetaValue::Bool(b) => b.to_variant(),
            MetaValue::U64(n) => n.to_variant(),
            MetaValue::I64(n) => n.to_variant(),
            MetaValue::F64(n) => n.to_variant(),
            MetaValue::StrList(list) => list.to_variant(),
            MetaValue::PkgList(pkgs) => pkglist_to_variant(pkgs),
            MetaValue::Json(value) => json_to_variant(value),
        }
    }
}

/// The `a(sssss)` variant of a package list, in the given order.
pub fn pkglist_to_variant(pkgs: &[PkgListEntry]) -> Variant {
    let children = pkgs.iter().map(|p| {
        (
            p.name.as_str(),
            p.epoch.as_str(),
            p.version.as_str(),
            p.release.as_str(),
            p.arch.as_str(),
        )
            .to_variant()
    });
    // The element type is fixed, so this cannot fail on an empty list either.
    Variant::array_from_iter_with_type(pkglist_element_type(), children)
}

fn pkglist_element_type() -> &'static VariantTy {
    // A static, valid type string.
    VariantTy::new("(sssss)").expect("(sssss) is a valid GVariant type")
}

/// Parse an `a(sssss)` package list variant (as read back from a commit).
pub fn pkglist_from_variant(v: &Variant) -> Result<Vec<PkgListEntry>> {
    let expected = VariantTy::new("a(sssss)").expect("a(sssss) is a valid GVariant type");
    if v.type_() != expected {
        bail!(
            "package list has type {} instead of a(sssss)",
            v.type_().as_str()
        );
    }
    let mut out = Vec::with_capacity(v.n_children());
    for child in v.iter() {
        let (name, epoch, version, release, arch): (String, String, String, String, String) = child
            .get()
            .context("package list entry is not a (sssss) tuple")?;
        out.push(PkgListEntry {
            name,
            epoch,
            version,
            release,
            arch,
        });
    }
    Ok(out)
}

/// Convert a JSON value to a GVariant the way json-glib does without a
/// signature: ints -> `x`, floats -> `d`, strings -> `s`, bools -> `b`,
/// arrays -> `av`, objects -> `a{sv}`, null -> `mv` (nothing).
/// Unsigned integers above `i64::MAX` do not fit `x` and become `d`.
pub fn json_to_variant(value: &serde_json::Value) -> Variant {
    use serde_json::Value;
    match value {
        Value::Null => Variant::from_none(VariantTy::VARIANT),
        Value::Bool(b) => b.to_variant(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_variant()
            } else {
                // u64 above i64::MAX, or a float.
                n.as_f64().unwrap_or(f64::NAN).to_variant()
            }
        }
        Value::String(s) => s.to_variant(),
        Value::Array(items) => {
            let children = items
                .iter()
                .map(|item| Variant::from_variant(&json_to_variant(item)));
            Variant::array_from_iter_with_type(VariantTy::VARIANT, children)
        }
        Value::Object(map) => {
            let entries = map.iter().map(|(k, v)| {
                Variant::from_dict_entry(
                    &k.to_variant(),
                    &Variant::from_variant(&json_to_variant(v)),
                )
            });
            Variant::array_from_iter_with_type(VariantTy::VARDICT.element(), entries)
        }
    }
}

/// An ordered map of commit metadata. Inserting an existing key replaces its
/// value and keeps its position, so the order (and therefore the commit
/// checksum) depends only on the sequence of insertions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitMetadata {
    entries: IndexMap<String, MetaValue>,
}

impl CommitMetadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `key` (replacing any previous value).
    pub fn insert(&mut self, key: impl Into<String>, value: MetaValue) -> &mut Self {
        self.entries.insert(key.into(), value);
        self
    }

    /// Set a string value.
    pub fn insert_str(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.insert(key, MetaValue::Str(value.into()))
    }

    /// Remove a key, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<MetaValue> {
        self.entries.shift_remove(key)
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.entries.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Mark the commit bootable with kernel version `kver`: `ostree.bootable`
    /// = true and `ostree.linux` = kver (what `ostree_commit_metadata_for_bootable`
    /// writes; that function is not bound in ostree 0.19).
    pub fn set_bootable(&mut self, kver: &str) -> &mut Self {
        self.insert(KEY_BOOTABLE, MetaValue::Bool(true));
        self.insert(KEY_LINUX, MetaValue::Str(kver.to_string()))
    }

    /// Set `ostree.container-cmd` (`as`).
    pub fn set_container_cmd(&mut self, cmd: &[String]) -> &mut Self {
        self.insert(KEY_CONTAINER_CMD, MetaValue::StrList(cmd.to_vec()))
    }

    /// Merge every key of a JSON object, in its order (values converted with
    /// [`json_to_variant`]). `origin` names the source for the error message.
    pub fn merge_json_object(
        &mut self,
        json: &serde_json::Value,
        origin: &str,
    ) -> Result<&mut Self> {
        let Some(map) = json.as_object() else {
            return Err(crate::exit::invalid_input(format!(
                "{origin}: commit metadata must be a JSON object of key -> value, not {}",
                json_kind(json)
            )));
        };
        for (k, v) in map {
            self.insert(k.clone(), MetaValue::Json(v.clone()));
        }
        Ok(self)
    }

    /// The `a{sv}` variant in native byte order, entries in insertion order.
    pub fn to_native_variant(&self) -> Variant {
        let entries = self.entries.iter().map(|(k, v)| {
            Variant::from_dict_entry(&k.to_variant(), &Variant::from_variant(&v.to_variant()))
        });
        Variant::array_from_iter_with_type(VariantTy::VARDICT.element(), entries)
    }

    /// The `a{sv}` variant as stored in a commit: big-endian, like rpm-ostree.
    pub fn to_variant(&self) -> Variant {
        native_to_big_endian(&self.to_native_variant())
    }
}

/// Byteswap a variant on little-endian hosts (GVariant numbers are stored in
/// the writer's order; OSTree and rpm-ostree canonicalize to big-endian).
pub fn native_to_big_endian(v: &Variant) -> Variant {
    if cfg!(target_endian = "little") {
        v.byteswap()
    } else {
        v.clone()
    }
}

/// The inverse of [`native_to_big_endian`] (the same swap).
pub fn big_endian_to_native(v: &Variant) -> Variant {
    native_to_big_endian(v)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Print a variant in GVariant text form (for messages and tests).
pub fn variant_text(v: &Variant) -> glib::GString {
    v.print(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_types_follow_json_glib() {
        assert_eq!(json_to_variant(&json!(5)).type_().as_str(), "x");
        assert_eq!(json_to_variant(&json!(-5)).type_().as_str(), "x");
        assert_eq!(json_to_variant(&json!(1.5)).type_().as_str(), "d");
        assert_eq!(json_to_variant(&json!("a")).type_().as_str(), "s");
        assert_eq!(json_to_variant(&json!(true)).type_().as_str(), "b");
        assert_eq!(json_to_variant(&json!(null)).type_().as_str(), "mv");
        let arr = json_to_variant(&json!(["a", 1]));
        assert_eq!(arr.type_().as_str(), "av");
        assert_eq!(arr.print(false).as_str(), "[<'a'>, <int64 1>]");
        let obj = json_to_variant(&json!({"k": [true], "n": {"x": 2.5}}));
        assert_eq!(obj.type_().as_str(), "a{sv}");
        assert_eq!(
            obj.print(false).as_str(),
            "{'k': <[<true>]>, 'n': <{'x': <2.5>}>}"
        );
        assert_eq!(json_to_variant(&json!(u64::MAX)).type_().as_str(), "d");
    }

    #[test]
    fn metadata_order_and_replacement() {
        let mut md = CommitMetadata::new();
        md.insert_str("b", "1");
        md.insert("a", MetaValue::Bool(true));
        md.insert_str("b", "2");
        assert_eq!(
            md.to_native_variant().print(false).as_str(),
            "{'b': <'2'>, 'a': <true>}"
        );
        md.remove("b");
        assert_eq!(md.len(), 1);
    }

    #[test]
    fn big_endian_roundtrip() {
        let mut md = CommitMetadata::new();
        md.insert("n", MetaValue::I64(42));
        md.insert("u", MetaValue::U64(7));
        md.insert_str("s", "text");
        let stored = md.to_variant();
        let dict = glib::VariantDict::new(Some(&stored));
        let n: i64 = dict.lookup("n").unwrap().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(n, 42i64.swap_bytes());
        }
        let back = big_endian_to_native(&stored);
        assert_eq!(back, md.to_native_variant());
        // Strings are not affected by the swap.
        let s: String = dict.lookup("s").unwrap().unwrap();
        assert_eq!(s, "text");
    }

    #[test]
    fn pkglist_roundtrip_and_evr() {
        let pkgs = vec![
            PkgListEntry {
                name: "bash".into(),
                epoch: "0".into(),
                version: "5.2".into(),
                release: "1.fc39".into(),
                arch: "x86_64".into(),
            },
            PkgListEntry {
                name: "shadow-utils".into(),
                epoch: "2".into(),
                version: "4.14".into(),
                release: "2".into(),
                arch: "x86_64".into(),
            },
        ];
        let v = pkglist_to_variant(&pkgs);
        assert_eq!(v.type_().as_str(), "a(sssss)");
        assert_eq!(pkglist_from_variant(&v).unwrap(), pkgs);
        assert_eq!(pkgs[0].evr(), "5.2-1.fc39");
        assert_eq!(pkgs[1].nevra(), "shadow-utils-2:4.14-2.x86_64");
        assert!(pkglist_from_variant(&"x".to_variant()).is_err());
        assert_eq!(pkglist_to_variant(&[]).type_().as_str(), "a(sssss)");
    }

    #[test]
    fn merge_json_rejects_non_objects() {
        let mut md = CommitMetadata::new();
        let err = md.merge_json_object(&json!([1]), "meta.json").unwrap_err();
        assert!(format!("{err:#}").contains("meta.json"));
        md.merge_json_object(&json!({"x": 1, "y": "z"}), "m")
            .unwrap();
        assert_eq!(md.len(), 2);
    }

    #[test]
    fn bootable_and_container_cmd() {
        let mut md = CommitMetadata::new();
        md.set_bootable("6.5.0-1.x86_64");
        md.set_container_cmd(&["/bin/sh".to_string()]);
        let v = md.to_native_variant();
        assert_eq!(
            v.print(false).as_str(),
            "{'ostree.bootable': <true>, 'ostree.linux': <'6.5.0-1.x86_64'>, 'ostree.container-cmd': <['/bin/sh']>}"
        );
    }
}
