//! Parse ONE treefile document (YAML or JSON text) into a
//! [`TreeComposeConfig`], applying rpm-ostree's per-file processing
//! (`treefile_parse_stream`, reference §2.2): unknown keys, legacy underscore
//! keys, `packages-$basearch`, package-string splitting, reserved variables,
//! the basearch check and the `container`/`edition` defaults.
//!
//! Pure: no file system access. Includes and externals are `resolve`'s job.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde_json::{Map, Value};

use super::condition::{IncludeConditions, VarValue};
use super::model::{
    known_keys, BootLocation, CheckGroups, CheckPasswd, ConditionalInclude,
    ConditionalIncludeTarget, Edition, TreeComposeConfig, LEGACY_KEYS,
};
use super::split::split_all;
use crate::exit::invalid_input;

/// The syntax of a treefile, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Kickstart,
}

impl Format {
    /// `.yaml`/`.yml` → YAML, `.ks` → kickstart, anything else → JSON.
    pub fn detect(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml") | Some("yml") => Format::Yaml,
            Some("ks") => Format::Kickstart,
            _ => Format::Json,
        }
    }
}

/// Read YAML or JSON text into a JSON object, with line/column on syntax errors.
pub fn text_to_object(text: &str, format: Format, name: &str) -> Result<Map<String, Value>> {
    let value: Value = match format {
        Format::Yaml => serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            invalid_input(format!("{name}{at}: invalid YAML: {e}"))
        })?,
        Format::Json | Format::Kickstart => serde_json::from_str(text).map_err(|e| {
            invalid_input(format!(
                "{name}:{}:{}: invalid JSON: {e}",
                e.line(),
                e.column()
            ))
        })?,
    };
    match value {
        Value::Object(m) => {
            reject_duplicate_fields(text, format, name)?;
            Ok(m)
        }
        // An empty YAML document is an empty treefile (serde_yaml reads it as
        // a struct with nothing set); an explicit null is not.
        Value::Null if format == Format::Yaml && yaml_has_no_content(text) => Ok(Map::new()),
        other => Err(invalid_input(format!(
            "{name}: a treefile must be a mapping of keys to values, found {}",
            kind(&other)
        ))),
    }
}

/// rpm-ostree deserializes straight into its struct, where a key given twice
/// is a "duplicate field" error; reading into a JSON value would silently keep
/// the last one. Re-scan the top-level keys to keep that error (with its
/// location). Unknown keys may repeat (they land in a map there too).
fn reject_duplicate_fields(text: &str, format: Format, name: &str) -> Result<()> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

    struct Scan;
    impl<'de> Visitor<'de> for Scan {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let known = known_keys();
            let mut seen = BTreeSet::new();
            while let Some(k) = map.next_key::<String>()? {
                let is_field = known.contains(&k.as_str())
                    || LEGACY_KEYS.iter().any(|(legacy, _)| *legacy == k);
                if is_field && !seen.insert(k.clone()) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate field `{k}` (give each key once)"
                    )));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }
    let res = match format {
        Format::Yaml => serde_yaml::Deserializer::from_str(text)
            .deserialize_map(Scan)
            .map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                format!("{name}{at}: {e}")
            }),
        Format::Json | Format::Kickstart => serde_json::Deserializer::from_str(text)
            .deserialize_map(Scan)
            .map_err(|e| format!("{name}:{}:{}: {e}", e.line(), e.column())),
    };
    res.map_err(invalid_input)
}

fn yaml_has_no_content(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Deserialize a JSON object into the config; on failure name the key.
pub fn deserialize_config(map: Map<String, Value>, name: &str) -> Result<TreeComposeConfig> {
    match serde_json::from_value::<TreeComposeConfig>(Value::Object(map.clone())) {
        Ok(c) => Ok(c),
        Err(whole) => {
            for (k, v) in map {
                let mut one = Map::new();
                one.insert(k.clone(), v);
                if let Err(e) = serde_json::from_value::<TreeComposeConfig>(Value::Object(one)) {
                    return Err(invalid_input(format!(
                        "{name}: invalid value for key '{k}': {e}"
                    )));
                }
            }
            Err(invalid_input(format!("{name}: {whole}")))
        }
    }
}

/// Parse one `conditional-include` list with clear, indexed errors.
fn parse_conditional_includes(v: Value, name: &str) -> Result<Vec<ConditionalInclude>> {
    let Value::Array(items) = v else {
        return Err(invalid_input(format!(
            "{name}: conditional-include must be a list of {{if: ..., include: ...}} entries, found {}",
            kind(&v)
        )));
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let what = format!("{name}: conditional-include entry {}", i + 1);
        let Value::Object(mut m) = item else {
            return Err(invalid_input(format!(
                "{what}: expected a mapping with 'if' and 'include'"
            )));
        };
        let cond = m
            .remove("if")
            .ok_or_else(|| invalid_input(format!("{what}: missing 'if'")))?;
        let inc = m
            .remove("include")
            .ok_or_else(|| invalid_input(format!("{what}: missing 'include'")))?;
        if let Some(k) = m.keys().next() {
            return Err(invalid_input(format!(
                "{what}: unknown key '{k}' (only 'if' and 'include' are allowed)"
            )));
        }
        let condition = IncludeConditions::from_value(&cond)
            .map_err(|e| invalid_input(format!("{what}: {e}")))?;
        let include: ConditionalIncludeTarget = serde_json::from_value(inc).map_err(|_| {
            invalid_input(format!(
                "{what}: 'include' must be a path, a list of paths or an inline treefile mapping"
            ))
        })?;
        // Like rpm-ostree, an inline treefile must be well-typed even when
        // its condition is false.
        if let ConditionalIncludeTarget::Inline(m) = &include {
            parse_inline(m, &what)?;
        }
        out.push(ConditionalInclude { condition, include });
    }
    Ok(out)
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|i| i.as_str().map(str::to_string))
        .collect()
}

/// Parse one YAML/JSON treefile document with per-file processing.
/// `basearch` is the compose architecture (`None`: unknown, as in
/// `compose postprocess`, so `packages-$arch` and `basearch` are not applied).
pub fn parse_treefile_str(
    text: &str,
    format: Format,
    name: &str,
    basearch: Option<&str>,
) -> Result<TreeComposeConfig> {
    let mut map = text_to_object(text, format, name)?;
    let known = known_keys();

    // Set aside what rpm-ostree keeps outside the typed fields: packages-*
    // keys, legacy underscore spellings and unknown keys. Errors about them
    // are raised below, in rpm-ostree's order.
    let mut arch_entries: Vec<(String, Value)> = Vec::new();
    let mut legacy: Vec<(&str, &str, Value)> = Vec::new();
    let mut extra = BTreeMap::new();
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        if known.contains(&k.as_str()) {
            continue;
        }
        let Some(v) = map.remove(&k) else { continue };
        if let Some((l, kebab)) = LEGACY_KEYS.iter().find(|(l, _)| *l == k) {
            legacy.push((l, kebab, v));
        } else if k.starts_with("packages-") {
            arch_entries.push((k, v));
        } else {
            extra.insert(k, v);
        }
    }

    // 1. Types (rpm-ostree: serde deserialization of the whole document).
    let conditional = match map.remove("conditional-include") {
        Some(v) => Some(parse_conditional_includes(v, name)?),
        None => None,
    };
    let mut cfg = deserialize_config(map, name)?;
    let mut legacy_cfgs = Vec::new();
    for (l, kebab, v) in legacy {
        let mut one = Map::new();
        one.insert(kebab.to_string(), v);
        let parsed = serde_json::from_value::<TreeComposeConfig>(Value::Object(one))
            .map_err(|e| invalid_input(format!("{name}: invalid value for key '{l}': {e}")))?;
        legacy_cfgs.push((l, kebab, parsed));
    }
    cfg.conditional_include = conditional;

    // 2. basearch, reserved variables, automatic variables.
    finish_file(&mut cfg, name, basearch)?;

    // 3. packages-$arch: every such key must be a list of strings.
    let mut arch_packages: Vec<String> = Vec::new();
    for (k, v) in arch_entries {
        let list = string_list(&v).ok_or_else(|| {
            invalid_input(format!(
                "{name}: Invalid field {k}: expected array of strings"
            ))
        })?;
        if basearch.is_some_and(|a| k == format!("packages-{a}")) {
            arch_packages = list;
        }
    }

    // 4. Unknown keys: an error in YAML, kept in JSON.
    if !extra.is_empty() && format == Format::Yaml {
        let unknown: Vec<&str> = extra.keys().map(String::as_str).collect();
        return Err(invalid_input(format!(
            "{name}: Unknown fields: {} (remove or rename them; see the treefile reference for valid keys)",
            unknown.join(", ")
        )));
    }
    cfg.extra = extra;

    // 5. container / edition defaults, applied to this file only.
    if cfg.container == Some(true) {
        cfg.boot_location = Some(BootLocation::Modules);
        cfg.selinux = Some(false);
        cfg.tmp_is_dir = Some(true);
        cfg.preserve_passwd = Some(false);
        cfg.check_passwd = Some(CheckPasswd::None);
        cfg.check_groups = Some(CheckGroups::None);
    }
    if cfg.edition == Some(Edition::E2024) {
        cfg.boot_location.get_or_insert(BootLocation::Modules);
        cfg.tmp_is_dir.get_or_insert(true);
    }

    // 6. Package strings: whitespace split, bootstrap-packages and packages-$arch folded in.
    let split = |items: Vec<String>, key: &str| -> Result<BTreeSet<String>> {
        split_all(items.iter())
            .map(|v| v.into_iter().collect())
            .map_err(|e| invalid_input(format!("{name}: {key}: {e}")))
    };
    // Like rpm-ostree, every parsed file ends up with a (possibly empty) set,
    // so `packages` is always serialized.
    let mut pkgs: BTreeSet<String> = match cfg.packages.take() {
        Some(p) => split(p.into_iter().collect(), "packages")?,
        None => BTreeSet::new(),
    };
    if let Some(b) = cfg.bootstrap_packages.take() {
        pkgs.extend(split(b.into_iter().collect(), "bootstrap-packages")?);
    }
    if !arch_packages.is_empty() {
        let key = format!("packages-{}", basearch.unwrap_or_default());
        pkgs.extend(split(arch_packages, &key)?);
    }
    if let Some(rp) = cfg.repo_packages.as_mut() {
        for entry in rp.iter_mut() {
            let items: Vec<String> = std::mem::take(&mut entry.packages).into_iter().collect();
            entry.packages = split(items, "repo-packages")?;
        }
    }
    if let Some(rp) = cfg.ex_override_replace.as_mut() {
        for entry in rp.iter_mut() {
            let items: Vec<String> = std::mem::take(&mut entry.packages).into_iter().collect();
            entry.packages = split(items, "ex-override-replace")?;
        }
    }
    cfg.packages = Some(pkgs);

    // 7. Legacy underscore spellings, migrated last as rpm-ostree does: a
    //    value already set (also by the container/edition defaults above)
    //    next to the legacy one is an error.
    for (l, kebab, legacy_cfg) in legacy_cfgs {
        let clash = match l {
            "gpg_key" => merge_legacy(&mut cfg.gpg_key, legacy_cfg.gpg_key),
            "boot_location" => merge_legacy(&mut cfg.boot_location, legacy_cfg.boot_location),
            "default_target" => merge_legacy(&mut cfg.default_target, legacy_cfg.default_target),
            _ => merge_legacy(
                &mut cfg.automatic_version_prefix,
                legacy_cfg.automatic_version_prefix,
            ),
        };
        if clash {
            return Err(invalid_input(format!(
                "{name}: Cannot use new and legacy forms of {l} (both '{kebab}' and '{l}' are set; keep '{kebab}')"
            )));
        }
    }
    Ok(cfg)
}

/// Move a legacy value into its field; `true` if both were set.
fn merge_legacy<T>(field: &mut Option<T>, legacy: Option<T>) -> bool {
    match (field.is_some(), legacy) {
        (true, Some(_)) => true,
        (false, l) => {
            *field = l;
            false
        }
        (true, None) => false,
    }
}

/// Basearch check/fill-in, the reserved-variable check and the automatic
/// `basearch`/`releasever` variables of one YAML/JSON file.
pub fn finish_file(cfg: &mut TreeComposeConfig, name: &str, basearch: Option<&str>) -> Result<()> {
    match (&cfg.basearch, basearch) {
        (Some(own), Some(arch)) if own != arch => {
            return Err(invalid_input(format!(
                "{name}: Invalid basearch {own} on {arch}: cross-composes are not supported"
            )));
        }
        (_, Some(arch)) => cfg.basearch = Some(arch.to_string()),
        // Architecture unknown (inspection only): like rpm-ostree, drop it.
        (_, None) => cfg.basearch = None,
    }
    if let Some(vars) = &cfg.variables {
        for reserved in ["releasever", "basearch"] {
            if vars.contains_key(reserved) {
                return Err(invalid_input(format!(
                    "{name}: variables: cannot define reserved variable '{reserved}' (it is set automatically; use the '{reserved}' key instead)"
                )));
            }
        }
    }
    let mut auto = BTreeMap::new();
    if let Some(arch) = &cfg.basearch {
        auto.insert("basearch".to_string(), VarValue::String(arch.clone()));
    }
    if let Some(r) = &cfg.releasever {
        auto.insert("releasever".to_string(), r.as_var());
    }
    if !auto.is_empty() {
        cfg.variables.get_or_insert_with(BTreeMap::new).extend(auto);
    }
    Ok(())
}

/// Deserialize an inline conditional-include treefile. Like rpm-ostree, no
/// per-file processing happens and unknown keys are ignored; keys that would
/// need file-relative externals or further includes are rejected (rpm-ostree
/// silently drops them).
pub fn parse_inline(map: &Map<String, Value>, name: &str) -> Result<TreeComposeConfig> {
    let known = known_keys();
    let mut filtered = Map::new();
    for (k, v) in map {
        if known.contains(&k.as_str()) {
            filtered.insert(k.clone(), v.clone());
        }
    }
    for k in [
        "include",
        "arch-include",
        "conditional-include",
        "postprocess-script",
        "add-files",
    ] {
        if filtered.contains_key(k) {
            return Err(invalid_input(format!(
                "{name}: an inline conditional-include treefile may not set '{k}'; move it into a separate file and include that"
            )));
        }
    }
    let cfg = deserialize_config(filtered, &format!("{name} (inline conditional-include)"))?;
    if matches!(cfg.check_passwd, Some(CheckPasswd::File { .. }))
        || matches!(cfg.check_groups, Some(CheckGroups::File { .. }))
    {
        return Err(invalid_input(format!(
            "{name}: an inline conditional-include treefile may not use check-passwd/check-groups of type file; move it into a separate file"
        )));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn yaml(s: &str) -> Result<TreeComposeConfig> {
        parse_treefile_str(s, Format::Yaml, "t.yaml", Some("x86_64"))
    }

    #[test]
    fn splitting_and_arch_packages() {
        let c = yaml("packages: [\"foo bar\", \"corge 'quuz >= 1.0'\"]\npackages-x86_64: [grub2]\npackages-s390x: [zipl]\nbootstrap-packages: [boot]\n").unwrap();
        let p: Vec<_> = c.packages.unwrap().into_iter().collect();
        assert_eq!(p, ["bar", "boot", "corge", "foo", "grub2", "quuz >= 1.0"]);
        assert_eq!(c.basearch.as_deref(), Some("x86_64"));
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = format!("{:#}", yaml("foo: 1\nbar: 2\n").unwrap_err());
        assert!(
            e.contains("t.yaml") && e.contains("Unknown fields: bar, foo"),
            "{e}"
        );
        let e = format!("{:#}", yaml("selinux: maybe\n").unwrap_err());
        assert!(e.contains("'selinux'"), "{e}");
        let e = format!("{:#}", yaml("packages: [a\n").unwrap_err());
        assert!(e.contains("t.yaml:"), "{e}");
        let e = format!(
            "{:#}",
            parse_treefile_str("{\n \"a\": ,\n}", Format::Json, "t.json", None).unwrap_err()
        );
        assert!(e.contains("t.json:2:"), "{e}");
        let e = format!("{:#}", yaml("packages-foo: bar\n").unwrap_err());
        assert!(e.contains("Invalid field packages-foo"), "{e}");
        let e = format!("{:#}", yaml("basearch: aarch64\n").unwrap_err());
        assert!(e.contains("cross-composes are not supported"), "{e}");
    }

    #[test]
    fn empty_documents() {
        assert_eq!(yaml("").unwrap().packages.unwrap().len(), 0);
        assert!(yaml("# just a comment\n---\n").is_ok());
        assert!(yaml("~\n").is_err());
        assert!(parse_treefile_str("null", Format::Json, "t.json", None).is_err());
        assert!(parse_treefile_str("", Format::Json, "t.json", None).is_err());
        let e = format!("{:#}", yaml("- a\n").unwrap_err());
        assert!(
            e.contains("must be a mapping") && e.contains("a list"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_fields_rejected() {
        let e = format!("{:#}", yaml("ref: a\npackages: [x]\nref: b\n").unwrap_err());
        assert!(
            e.contains("duplicate field `ref`") && e.contains("t.yaml:"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse_treefile_str(
                "{\"ref\": \"a\",\n \"ref\": \"b\"}",
                Format::Json,
                "t.json",
                None
            )
            .unwrap_err()
        );
        assert!(
            e.contains("duplicate field `ref`") && e.contains("t.json:2:"),
            "{e}"
        );
        let c = parse_treefile_str("{\"c\": 1, \"c\": 2}", Format::Json, "t.json", None).unwrap();
        assert_eq!(c.extra["c"], 2);
    }

    #[test]
    fn legacy_keys_migrate_last() {
        let c = yaml("default_target: graphical.target\n").unwrap();
        assert_eq!(c.default_target.as_deref(), Some("graphical.target"));
        // rpm-ostree quirk: edition 2024 sets boot-location before the legacy
        // key is migrated, so the two clash.
        let e = format!(
            "{:#}",
            yaml("edition: \"2024\"\nboot_location: new\n").unwrap_err()
        );
        assert!(
            e.contains("Cannot use new and legacy forms of boot_location"),
            "{e}"
        );
        let e = format!("{:#}", yaml("boot_location: sideways\n").unwrap_err());
        assert!(e.contains("'boot_location'"), "{e}");
    }

    #[test]
    fn inline_is_typechecked_even_if_false() {
        let e = format!(
            "{:#}",
            yaml(
                "conditional-include:\n  - if: basearch == \"s390x\"\n    include: {packages: 5}\n"
            )
            .unwrap_err()
        );
        assert!(
            e.contains("conditional-include entry 1") && e.contains("'packages'"),
            "{e}"
        );
    }

    #[test]
    fn json_keeps_unknown() {
        let c = parse_treefile_str(
            "{\"comment\": \"x\", \"packages\": [\"a b\"]}",
            Format::Json,
            "t.json",
            None,
        )
        .unwrap();
        assert_eq!(c.extra["comment"], "x");
        assert_eq!(c.packages.unwrap().len(), 2);
        assert!(c.basearch.is_none());
    }

    #[test]
    fn container_and_edition_defaults() {
        let c = yaml("container: true\nselinux: true\n").unwrap();
        assert_eq!(c.selinux, Some(false));
        assert_eq!(c.tmp_is_dir, Some(true));
        let c = yaml("edition: \"2024\"\nboot-location: new\n").unwrap();
        assert_eq!(c.boot_location, Some(BootLocation::New));
        assert_eq!(c.tmp_is_dir, Some(true));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".*") {
            let _ = parse_treefile_str(&s, Format::Yaml, "p.yaml", Some("x86_64"));
            let _ = parse_treefile_str(&s, Format::Json, "p.json", None);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = String::from_utf8_lossy(&b);
            let _ = parse_treefile_str(&s, Format::Yaml, "p.yaml", Some("x86_64"));
        }

        #[test]
        fn arbitrary_key_values_never_panic(
            keys in proptest::collection::vec(proptest::sample::select(known_keys().to_vec()), 0..4),
            vals in proptest::collection::vec(prop_oneof![
                Just("1"), Just("true"), Just("\"x\""), Just("[\"a\", 1]"), Just("{\"a\": \"b\"}"),
                Just("[]"), Just("null"), Just("[[\"a\", \"b\"]]"), Just("{\"type\": \"file\"}")
            ], 4))
        {
            let body: Vec<String> = keys.iter().zip(vals.iter()).map(|(k, v)| format!("\"{k}\": {v}")).collect();
            let text = format!("{{{}}}", body.join(","));
            let _ = parse_treefile_str(&text, Format::Json, "p.json", Some("x86_64"));
        }
    }
}
