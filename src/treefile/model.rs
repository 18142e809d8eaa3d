//! The treefile data model: every key of an rpm-ostree treefile as a typed
//! serde field, plus the getters that supply documented defaults.
//!
//! All fields are `Option<T>` so that include resolution can tell "unset" from
//! "set to the default" when merging. Field declaration order is the
//! serialization order of rpm-ostree's `treefile.json` (reference §3.7), so do
//! not reorder fields. This module does no I/O and no include resolution.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::condition::{IncludeConditions, VarValue};

/// `edition`: selects per-file defaults (reference §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Edition {
    #[serde(rename = "2014")]
    E2014,
    #[serde(rename = "2024")]
    E2024,
}

/// `boot-location`. Also the parameter type of the kernel step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootLocation {
    /// Also hardlink kernel and initramfs into `usr/lib/ostree-boot` (2014 edition default).
    #[default]
    New,
    Modules,
    KernelInstall,
}

/// `opt-usrlocal`. Also the parameter type of the post-processing steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptUsrLocal {
    /// `/opt -> var/opt`, `/usr/local -> ../var/usrlocal`.
    #[default]
    Var,
    Root,
    #[serde(alias = "stateoverlay")]
    StateOverlay,
}

/// `rpmdb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RpmdbBackend {
    #[serde(alias = "b-d-b")]
    Bdb,
    Sqlite,
    Ndb,
    Target,
    Host,
}

impl RpmdbBackend {
    /// Everything except `host` means "rewrite the rpmdb in the target's format".
    pub fn is_target(self) -> bool {
        self != RpmdbBackend::Host
    }
}

/// `sysusers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SysUsers {
    ComposeAuto,
    ComposeForced,
}

/// `repo-metadata` / `advisories-metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataTarget {
    Inline,
    Detached,
    Disabled,
}

/// `releasever`: a string or a number, serialized as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Releasever {
    Number(u64),
    String(String),
}

impl Releasever {
    /// The value as a variable (number stays a number for comparisons).
    pub fn as_var(&self) -> VarValue {
        match self {
            Releasever::Number(n) => VarValue::Number(*n),
            Releasever::String(s) => VarValue::String(s.clone()),
        }
    }
}

impl std::fmt::Display for Releasever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Releasever::Number(n) => write!(f, "{n}"),
            Releasever::String(s) => f.write_str(s),
        }
    }
}

/// `include` / `arch-include` values: one path or a list of paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IncludePaths {
    One(String),
    Many(Vec<String>),
}

impl IncludePaths {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            IncludePaths::One(s) => vec![s],
            IncludePaths::Many(v) => v,
        }
    }
}

/// What a `conditional-include` entry includes: files, or an inline treefile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConditionalIncludeTarget {
    Paths(IncludePaths),
    /// Kept as raw JSON: it is deserialized without per-file preprocessing
    /// when (and only when) its condition holds.
    Inline(serde_json::Map<String, serde_json::Value>),
}

/// One `conditional-include` entry (never serialized).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionalInclude {
    #[serde(rename = "if")]
    pub condition: IncludeConditions,
    pub include: ConditionalIncludeTarget,
}

/// `repo-packages` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoPackage {
    pub repo: String,
    pub packages: BTreeSet<String>,
}

/// `rojig` (legacy, kept for coreos-assembler compatibility).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rojig {
    pub name: String,
    pub summary: String,
    pub license: String,
    /// Serialized as `null` when unset, as rpm-ostree does.
    pub description: Option<String>,
}

/// A `check-passwd` data entry: `uid`, `[uid]` or `[uid, gid]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PasswdIds {
    Same(u32),
    One([u32; 1]),
    Pair([u32; 2]),
}

impl PasswdIds {
    /// `(uid, gid)`.
    pub fn ids(self) -> (u32, u32) {
        match self {
            PasswdIds::Same(i) | PasswdIds::One([i]) => (i, i),
            PasswdIds::Pair([u, g]) => (u, g),
        }
    }
}

/// `check-passwd`, internally tagged on `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CheckPasswd {
    None,
    Previous,
    File {
        filename: String,
    },
    Data {
        entries: BTreeMap<String, PasswdIds>,
    },
}

/// `check-groups`, internally tagged on `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CheckGroups {
    None,
    Previous,
    File { filename: String },
    Data { entries: BTreeMap<String, u32> },
}

/// `ex-override-replace` entry (derivation only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideReplace {
    pub from: OverrideReplaceFrom,
    pub packages: BTreeSet<String>,
}

/// Where `ex-override-replace` takes packages from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverrideReplaceFrom {
    Repo(String),
}

/// `initramfs` (derivation only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeriveInitramfs {
    pub regenerate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etc: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

/// `custom` (derivation only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeriveCustom {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The whole treefile. Field order = rpm-ostree serialization order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TreeComposeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_packages: Option<Vec<RepoPackage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cliwrap: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cliwrap_binaries: Option<Vec<String>>,

    // Derivation (client-side) fields: parsed so they can be rejected by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_refspec: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_image_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages_local: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages_local_fileoverride: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_remove: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ex_override_replace: Option<Vec<OverrideReplace>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_replace_local: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<DeriveInitramfs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<DeriveCustom>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unconfigured_state: Option<String>,

    // Base fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edition: Option<Edition>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub treeref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basearch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rojig: Option<Rojig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repos: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockfile_repos: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_devices: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux_label_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysusers: Option<SysUsers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ima: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpg_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include: Option<IncludePaths>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch_include: Option<BTreeMap<String, IncludePaths>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_packages: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_layers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_override_layers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_packages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_module: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommends: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_langs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initramfs_args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_initramfs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly_executables: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_location: Option<BootLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmp_is_dir: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_usrlocal: Option<OptUsrLocal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machineid_compat: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub releasever: Option<Releasever>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic_version_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic_version_suffix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutate_os_release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etc_group_members: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preserve_passwd: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_passwd: Option<CheckPasswd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_groups: Option<CheckGroups>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_removed_users: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_removed_groups: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postprocess_script: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postprocess: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_files: Option<Vec<(String, String)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_files: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_from_packages: Option<Vec<Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_commit_metadata: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_metadata: Option<MetadataTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advisories_metadata: Option<MetadataTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpmdb: Option<RpmdbBackend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpmdb_normalize: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_cmd: Option<Vec<String>>,

    // Never serialized.
    #[serde(skip_serializing)]
    pub variables: Option<BTreeMap<String, VarValue>>,
    #[serde(skip_serializing)]
    pub repovars: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing)]
    pub conditional_include: Option<Vec<ConditionalInclude>>,

    /// Unknown keys of a JSON treefile (YAML rejects them). Serialized after
    /// every known key, sorted by name.
    #[serde(skip)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The derivation (client-side) keys that `compose tree` rejects.
pub const DERIVATION_KEYS: &[&str] = &[
    "base-refspec",
    "container-image-reference",
    "packages-local",
    "packages-local-fileoverride",
    "override-remove",
    "ex-override-replace",
    "override-replace-local",
    "initramfs",
    "custom",
    "override-commit",
    "unconfigured-state",
];

/// Legacy underscore spellings and the kebab key they migrate to.
pub const LEGACY_KEYS: &[(&str, &str)] = &[
    ("gpg_key", "gpg-key"),
    ("boot_location", "boot-location"),
    ("default_target", "default-target"),
    ("automatic_version_prefix", "automatic-version-prefix"),
];

impl TreeComposeConfig {
    pub fn selinux(&self) -> bool {
        self.selinux.unwrap_or(true)
    }
    pub fn selinux_label_version(&self) -> u32 {
        self.selinux_label_version.unwrap_or(0)
    }
    pub fn recommends(&self) -> bool {
        self.recommends.unwrap_or(true)
    }
    pub fn documentation(&self) -> bool {
        self.documentation.unwrap_or(true)
    }
    pub fn edition(&self) -> Edition {
        self.edition.unwrap_or(Edition::E2014)
    }
    /// Edition/container defaults were applied per file at parse time, so the
    /// remaining default is the 2014 one.
    pub fn boot_location(&self) -> BootLocation {
        self.boot_location.unwrap_or(BootLocation::New)
    }
    pub fn tmp_is_dir(&self) -> bool {
        self.tmp_is_dir.unwrap_or(false)
    }
    pub fn opt_usrlocal(&self) -> OptUsrLocal {
        self.opt_usrlocal.unwrap_or(OptUsrLocal::Var)
    }
    pub fn machineid_compat(&self) -> bool {
        self.machineid_compat.unwrap_or(true)
    }
    pub fn preserve_passwd(&self) -> bool {
        self.preserve_passwd.unwrap_or(true)
    }
    pub fn container(&self) -> bool {
        self.container.unwrap_or(false)
    }
    pub fn no_initramfs(&self) -> bool {
        self.no_initramfs.unwrap_or(false)
    }
    pub fn ignore_devices(&self) -> bool {
        self.ignore_devices.unwrap_or(true)
    }
    pub fn ima(&self) -> bool {
        self.ima.unwrap_or(false)
    }
    pub fn cliwrap(&self) -> bool {
        self.cliwrap.unwrap_or(false)
    }
    pub fn readonly_executables(&self) -> bool {
        self.readonly_executables.unwrap_or(false)
    }
    pub fn rpmdb(&self) -> RpmdbBackend {
        self.rpmdb.unwrap_or(RpmdbBackend::Target)
    }
    pub fn rpmdb_normalize(&self) -> bool {
        self.rpmdb_normalize.unwrap_or(false)
    }
    pub fn sysusers(&self) -> SysUsers {
        self.sysusers.unwrap_or(SysUsers::ComposeAuto)
    }
    pub fn check_passwd(&self) -> CheckPasswd {
        self.check_passwd.clone().unwrap_or(CheckPasswd::Previous)
    }
    pub fn check_groups(&self) -> CheckGroups {
        self.check_groups.clone().unwrap_or(CheckGroups::Previous)
    }
    pub fn automatic_version_suffix(&self) -> String {
        self.automatic_version_suffix
            .clone()
            .unwrap_or_else(|| ".".to_string())
    }
    pub fn repo_metadata(&self) -> MetadataTarget {
        self.repo_metadata.unwrap_or(MetadataTarget::Inline)
    }
    pub fn advisories_metadata(&self) -> MetadataTarget {
        self.advisories_metadata.unwrap_or(MetadataTarget::Inline)
    }
    /// The final package set (empty if unset).
    pub fn packages(&self) -> BTreeSet<String> {
        self.packages.clone().unwrap_or_default()
    }
    /// The ref as written (after lenient `${var}` substitution).
    pub fn treeref(&self) -> Option<&str> {
        self.treeref.as_deref()
    }

    /// rpm-ostree's deprecation warnings for this config (it prints them
    /// and sleeps 3 s if there are any; the caller decides).
    pub fn deprecation_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let boot = self.boot_location();
        if boot != BootLocation::Modules {
            let name = serde_json::to_string(&boot).unwrap_or_default();
            out.push(format!(
                "boot-location: {name} is deprecated, use boot-location: modules"
            ));
        }
        if self.initramfs_args.as_ref().is_some_and(|v| !v.is_empty()) {
            out.push("initramfs-args is deprecated, use /etc/dracut.conf.d".to_string());
        }
        if self.cliwrap() {
            out.push("cliwrap is deprecated and slated for removal".to_string());
        }
        out
    }

    /// Keys that are experimental (rpm-ostree prints a NOTICE for each).
    pub fn experimental_keys(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.lockfile_repos.is_some() {
            out.push("lockfile-repos");
        }
        out
    }

    /// The derivation keys that are set, in rpm-ostree's order.
    pub fn derivation_keys_set(&self) -> Vec<&'static str> {
        let set = [
            self.base_refspec.is_some(),
            self.container_image_reference.is_some(),
            self.packages_local.is_some(),
            self.packages_local_fileoverride.is_some(),
            self.override_remove.is_some(),
            self.ex_override_replace.is_some(),
            self.override_replace_local.is_some(),
            self.initramfs.is_some(),
            self.custom.is_some(),
            self.override_commit.is_some(),
            self.unconfigured_state.is_some(),
        ];
        DERIVATION_KEYS
            .iter()
            .zip(set)
            .filter_map(|(k, s)| s.then_some(*k))
            .collect()
    }
}

/// The names of every key `TreeComposeConfig` deserializes, taken from the
/// serde derive itself so it can never drift from the struct.
pub fn known_keys() -> &'static [&'static str] {
    use std::sync::OnceLock;
    static KEYS: OnceLock<&'static [&'static str]> = OnceLock::new();
    KEYS.get_or_init(introspect::struct_fields::<TreeComposeConfig>)
}

mod introspect {
    //! Captures the field list serde's derive passes to `deserialize_struct`.
    //! Hand-written because no dependency offers it and it is a few lines.
    use serde::de::{self, Deserialize, Deserializer, Visitor};
    use std::fmt;

    #[derive(Debug)]
    struct Captured(&'static [&'static str]);
    impl fmt::Display for Captured {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("field list captured")
        }
    }
    impl std::error::Error for Captured {}
    impl de::Error for Captured {
        fn custom<T: fmt::Display>(_msg: T) -> Self {
            Captured(&[])
        }
    }

    struct FieldGrabber;
    impl<'de> Deserializer<'de> for FieldGrabber {
        type Error = Captured;
        fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, Captured> {
            Err(Captured(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _v: V,
        ) -> Result<V::Value, Captured> {
            Err(Captured(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    pub fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
        match T::deserialize(FieldGrabber) {
            Err(Captured(f)) => f,
            Ok(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_cover_the_model() {
        let keys = known_keys();
        for k in [
            "packages",
            "ref",
            "repo-packages",
            "conditional-include",
            "variables",
            "repovars",
            "container-cmd",
            "packages-local",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(!keys.contains(&"extra"));
        assert!(!keys.contains(&"gpg_key"));
    }

    #[test]
    fn deprecations() {
        let c = TreeComposeConfig::default();
        assert_eq!(
            c.deprecation_warnings(),
            ["boot-location: \"new\" is deprecated, use boot-location: modules"]
        );
        let c = TreeComposeConfig {
            boot_location: Some(BootLocation::Modules),
            initramfs_args: Some(vec!["--no-hostonly".into()]),
            cliwrap: Some(true),
            lockfile_repos: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(c.deprecation_warnings().len(), 2);
        assert_eq!(c.experimental_keys(), ["lockfile-repos"]);
    }

    #[test]
    fn enum_spellings() {
        let r: RpmdbBackend = serde_json::from_str("\"b-d-b\"").unwrap();
        assert_eq!(r, RpmdbBackend::Bdb);
        let o: OptUsrLocal = serde_json::from_str("\"stateoverlay\"").unwrap();
        assert_eq!(o, OptUsrLocal::StateOverlay);
        assert_eq!(
            serde_json::to_string(&OptUsrLocal::StateOverlay).unwrap(),
            "\"state-overlay\""
        );
        let b: BootLocation = serde_json::from_str("\"kernel-install\"").unwrap();
        assert_eq!(b, BootLocation::KernelInstall);
        let e: Edition = serde_json::from_str("\"2024\"").unwrap();
        assert_eq!(e, Edition::E2024);
        let p: CheckPasswd =
            serde_json::from_str(r#"{"type":"data","entries":{"adm":[3,4],"foo":[2],"bin":1}}"#)
                .unwrap();
        match p {
            CheckPasswd::Data { entries } => {
                assert_eq!(entries["adm"].ids(), (3, 4));
                assert_eq!(entries["foo"].ids(), (2, 2));
                assert_eq!(entries["bin"].ids(), (1, 1));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
