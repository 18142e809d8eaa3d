//! `${var}` substitution (reference §3.4).
//!
//! Two flavours: the lenient pass rpm-ostree runs over the merged treefile
//! (known variables replaced, unknown `${x}` left verbatim) and the strict
//! pass it runs over `ref` at compose time (unknown `${x}` is an error).

use std::collections::BTreeMap;

use super::condition::VarValue;
use super::model::TreeComposeConfig;

/// Stringify the variable map and reject keys/values containing `$`, `{`, `}`.
pub fn stringify_vars(
    vars: &BTreeMap<String, VarValue>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in vars {
        let v = v.to_string();
        for (what, s) in [("name", k.as_str()), ("value", v.as_str())] {
            if s.contains(['$', '{', '}']) {
                return Err(format!(
                    "variable {what} '{s}' (variable '{k}') contains one of '$', '{{', '}}'; remove them"
                ));
            }
        }
        out.insert(k.clone(), v);
    }
    Ok(out)
}

/// Replace `${name}` for every known variable; leave everything else.
pub fn substitute_lenient(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = s.to_string();
    if !out.contains("${") {
        return out;
    }
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

/// Strict substitution: every `${name}` must be known; an unclosed `${` is an error.
pub fn substitute_strict(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("Unclosed variable in '{s}'"))?;
        let name = &after[..end];
        let value = vars
            .get(name)
            .ok_or_else(|| format!("Unknown variable reference ${{{name}}} in '{s}'"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn subst_opt(field: &mut Option<String>, vars: &BTreeMap<String, String>) {
    if let Some(s) = field.as_mut() {
        *s = substitute_lenient(s, vars);
    }
}

fn subst_map(
    field: &mut Option<BTreeMap<String, serde_json::Value>>,
    vars: &BTreeMap<String, String>,
) {
    if let Some(m) = field.as_mut() {
        for v in m.values_mut() {
            if let serde_json::Value::String(s) = v {
                *s = substitute_lenient(s, vars);
            }
        }
    }
}

/// The lenient pass over the fields listed in §3.4.
pub fn substitute_config(
    cfg: &mut TreeComposeConfig,
    vars: &BTreeMap<String, VarValue>,
) -> Result<(), String> {
    let vars = stringify_vars(vars)?;
    subst_opt(&mut cfg.treeref, &vars);
    if let Some(r) = cfg.rojig.as_mut() {
        r.name = substitute_lenient(&r.name, &vars);
        r.summary = substitute_lenient(&r.summary, &vars);
        subst_opt(&mut r.description, &vars);
    }
    subst_map(&mut cfg.metadata, &vars);
    subst_map(&mut cfg.add_commit_metadata, &vars);
    subst_opt(&mut cfg.automatic_version_prefix, &vars);
    subst_opt(&mut cfg.mutate_os_release, &vars);
    subst_opt(&mut cfg.platform_module, &vars);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lenient_leaves_unknown() {
        let v = m(&[("basearch", "x86_64")]);
        assert_eq!(
            substitute_lenient("a/${basearch}/${releasever}", &v),
            "a/x86_64/${releasever}"
        );
    }

    #[test]
    fn strict() {
        let v = m(&[("basearch", "x86_64")]);
        assert_eq!(
            substitute_strict("a/${basearch}/b", &v).unwrap(),
            "a/x86_64/b"
        );
        assert_eq!(substitute_strict("$x/{y}", &v).unwrap(), "$x/{y}");
        for noop in ["", "foo bar baz", "}", "$} blah$ }}"] {
            assert_eq!(substitute_strict(noop, &v).unwrap(), noop);
        }
        let v2 = m(&[("basearch", "ppc64le"), ("osvendor", "fedora")]);
        assert_eq!(
            substitute_strict("ostree/${osvendor}/${basearch}/blah/${basearch}/whee", &v2).unwrap(),
            "ostree/fedora/ppc64le/blah/ppc64le/whee"
        );
        assert_eq!(
            substitute_strict("${osvendor}${basearch}", &v2).unwrap(),
            "fedorappc64le"
        );
        let e = substitute_strict("a/${stream}", &v).unwrap_err();
        assert!(e.starts_with("Unknown variable reference ${stream}"), "{e}");
        let e = substitute_strict("a/${basearch", &v).unwrap_err();
        assert!(e.starts_with("Unclosed variable"), "{e}");
    }

    #[test]
    fn invalid_var_values_rejected() {
        let mut vars = BTreeMap::new();
        vars.insert("x".to_string(), VarValue::String("a${b}".into()));
        assert!(stringify_vars(&vars).is_err());
    }

    proptest! {
        #[test]
        fn strict_never_panics(s in ".*") {
            let _ = substitute_strict(&s, &m(&[("basearch", "x86_64")]));
        }

        #[test]
        fn strict_agrees_with_lenient_when_all_known(parts in proptest::collection::vec("[a-z/]{0,5}", 0..4)) {
            let s = parts.join("${basearch}");
            let v = m(&[("basearch", "aarch64")]);
            prop_assert_eq!(substitute_strict(&s, &v).unwrap(), substitute_lenient(&s, &v));
        }
    }
}
