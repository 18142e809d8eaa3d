//! `conditional-include` conditions (reference §3.2) and the variable values
//! they compare against (§3.3).
//!
//! A condition is `<variable> <op> <value>` with op one of `== != < <= > >=`
//! and value `true`, `false`, digits or a double-quoted string. Parsing is
//! pure; evaluation takes the variable map. Not for `${var}` substitution
//! (see `varsubst`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A treefile variable: bool, unsigned number or string (§3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VarValue {
    Bool(bool),
    Number(u64),
    String(String),
}

impl fmt::Display for VarValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarValue::Bool(b) => write!(f, "{b}"),
            VarValue::Number(n) => write!(f, "{n}"),
            VarValue::String(s) => f.write_str(s),
        }
    }
}

impl VarValue {
    fn type_name(&self) -> &'static str {
        match self {
            VarValue::Bool(_) => "bool",
            VarValue::Number(_) => "number",
            VarValue::String(_) => "string",
        }
    }
    /// How the value is written in a condition (strings quoted).
    fn literal(&self) -> String {
        match self {
            VarValue::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CondOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CondOp {
    fn parse(s: &str) -> Option<CondOp> {
        Some(match s {
            "==" => CondOp::Eq,
            "!=" => CondOp::Ne,
            "<" => CondOp::Lt,
            "<=" => CondOp::Le,
            ">" => CondOp::Gt,
            ">=" => CondOp::Ge,
            _ => return None,
        })
    }
    fn as_str(self) -> &'static str {
        match self {
            CondOp::Eq => "==",
            CondOp::Ne => "!=",
            CondOp::Lt => "<",
            CondOp::Le => "<=",
            CondOp::Gt => ">",
            CondOp::Ge => ">=",
        }
    }
}

/// One parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeCondition {
    pub variable: String,
    pub op: CondOp,
    pub value: VarValue,
}

impl fmt::Display for IncludeCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.variable,
            self.op.as_str(),
            self.value.literal()
        )
    }
}

fn condition_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // The pattern is a literal; failing to compile it is a programming error
        // caught by the unit tests, never an input-dependent failure.
        #[allow(clippy::expect_used)]
        Regex::new(r#"^\s*([[:alnum:]_]+)\s*(\S+)\s*(true|false|[0-9]+|".*")\s*$"#)
            .expect("condition regex compiles")
    })
}

impl IncludeCondition {
    /// Parse `var op value`.
    pub fn parse(s: &str) -> Result<IncludeCondition, String> {
        let caps = condition_regex()
            .captures(s)
            .ok_or_else(|| format!("invalid condition: {s}"))?;
        let variable = caps[1].to_string();
        let op_str = &caps[2];
        let op = CondOp::parse(op_str).ok_or_else(|| {
            format!("invalid condition: {s}: expected one of ==, !=, >, >=, <, <= but got {op_str}")
        })?;
        let raw = &caps[3];
        let value = match raw {
            "true" => VarValue::Bool(true),
            "false" => VarValue::Bool(false),
            _ if raw.starts_with('"') => VarValue::String(raw[1..raw.len() - 1].to_string()),
            _ => VarValue::Number(
                raw.parse()
                    .map_err(|e| format!("invalid condition: {s}: number {raw}: {e}"))?,
            ),
        };
        Ok(IncludeCondition {
            variable,
            op,
            value,
        })
    }

    /// Evaluate against the variable map.
    pub fn evaluate(&self, vars: &BTreeMap<String, VarValue>) -> Result<bool, String> {
        let actual = vars
            .get(&self.variable)
            .ok_or_else(|| format!("undefined variable '{}'", self.variable))?;
        let mismatch = || {
            format!(
                "{} is not same type as {} (it is a {}, the condition compares with a {})",
                self.variable,
                self.value,
                actual.type_name(),
                self.value.type_name()
            )
        };
        let bad_op = || {
            format!(
                "invalid op for values '{}' and '{}' ({} only supports == and !=)",
                actual,
                self.value,
                self.op.as_str()
            )
        };
        match (actual, &self.value) {
            (VarValue::Number(a), VarValue::Number(b)) => Ok(match self.op {
                CondOp::Eq => a == b,
                CondOp::Ne => a != b,
                CondOp::Lt => a < b,
                CondOp::Le => a <= b,
                CondOp::Gt => a > b,
                CondOp::Ge => a >= b,
            }),
            (VarValue::Bool(_), VarValue::Bool(_)) | (VarValue::String(_), VarValue::String(_)) => {
                match self.op {
                    CondOp::Eq => Ok(actual == &self.value),
                    CondOp::Ne => Ok(actual != &self.value),
                    _ => Err(bad_op()),
                }
            }
            _ => Err(mismatch()),
        }
    }
}

/// The `if:` of a conditional-include entry: one condition or a list (ANDed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawConditions")]
pub struct IncludeConditions(pub Vec<IncludeCondition>);

#[derive(Deserialize)]
#[serde(untagged)]
enum RawConditions {
    One(String),
    Many(Vec<String>),
}

impl TryFrom<RawConditions> for IncludeConditions {
    type Error = String;
    fn try_from(raw: RawConditions) -> Result<Self, String> {
        let list = match raw {
            RawConditions::One(s) => vec![s],
            RawConditions::Many(v) => v,
        };
        list.iter()
            .map(|s| IncludeCondition::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map(IncludeConditions)
    }
}

impl IncludeConditions {
    /// Parse from a JSON value (string or list of strings), with clear errors.
    pub fn from_value(v: &serde_json::Value) -> Result<IncludeConditions, String> {
        let raw = match v {
            serde_json::Value::String(s) => RawConditions::One(s.clone()),
            serde_json::Value::Array(items) => RawConditions::Many(
                items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_string).ok_or_else(|| {
                            format!("invalid condition {i}: expected a string like 'var == \"value\"'")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(format!(
                    "invalid condition {other}: expected a string like 'var == \"value\"' or a list of them"
                ))
            }
        };
        IncludeConditions::try_from(raw)
    }

    /// All conditions are evaluated (so errors always surface), then ANDed.
    pub fn evaluate(&self, vars: &BTreeMap<String, VarValue>) -> Result<bool, String> {
        let mut all = true;
        for c in &self.0 {
            all &= c.evaluate(vars)?;
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars() -> BTreeMap<String, VarValue> {
        let mut m = BTreeMap::new();
        m.insert("releasever".into(), VarValue::Number(35));
        m.insert("mystr".into(), VarValue::String("str".into()));
        m.insert("mybool".into(), VarValue::Bool(true));
        m
    }

    fn eval(s: &str) -> Result<bool, String> {
        IncludeCondition::parse(s)?.evaluate(&vars())
    }

    #[test]
    fn operators() {
        assert_eq!(eval("releasever == 35"), Ok(true));
        assert_eq!(eval("releasever != 35"), Ok(false));
        assert_eq!(eval("releasever < 35"), Ok(false));
        assert_eq!(eval("releasever <= 35"), Ok(true));
        assert_eq!(eval("releasever > 34"), Ok(true));
        assert_eq!(eval("releasever >= 36"), Ok(false));
        assert_eq!(eval("  mystr == \"str\" "), Ok(true));
        assert_eq!(eval("mystr != \"\""), Ok(true));
        assert_eq!(eval("mybool == true"), Ok(true));
        assert_eq!(eval("mybool != false"), Ok(true));
    }

    #[test]
    fn errors() {
        let e = IncludeCondition::parse("garbage").unwrap_err();
        assert!(e.contains("invalid condition"), "{e}");
        let e = IncludeCondition::parse("myvar garbage true").unwrap_err();
        assert!(
            e.contains("expected one of ==, !=, >, >=, <, <= but got garbage"),
            "{e}"
        );
        // Like rpm-ostree, the operator is greedy: no spaces means a bad operator.
        assert!(IncludeCondition::parse("releasever==35").is_err());
        assert_eq!(eval("mystr == \"a\"b\""), Ok(false));
        let e = IncludeCondition::parse("myvar == garbage").unwrap_err();
        assert!(e.contains("invalid condition"), "{e}");
        let e = eval("mystr > 8").unwrap_err();
        assert!(e.contains("not same type"), "{e}");
        let e = eval("mybool <= 5").unwrap_err();
        assert!(e.contains("not same type"), "{e}");
        let e = eval("mystr > \"asd\"").unwrap_err();
        assert!(e.contains("invalid op for values"), "{e}");
        let e = eval("enoent > \"asd\"").unwrap_err();
        assert_eq!(e, "undefined variable 'enoent'");
        let e = IncludeConditions::from_value(&serde_json::json!(5)).unwrap_err();
        assert!(e.contains("invalid condition"), "{e}");
    }

    #[test]
    fn list_is_anded_and_all_evaluated() {
        let c = IncludeConditions::from_value(&serde_json::json!([
            "releasever == 35",
            "mystr == \"str\""
        ]))
        .unwrap();
        assert_eq!(c.evaluate(&vars()), Ok(true));
        let c = IncludeConditions::from_value(&serde_json::json!([
            "releasever == 1",
            "undefinedvar == 1"
        ]))
        .unwrap();
        assert!(c.evaluate(&vars()).is_err());
    }

    proptest! {
        #[test]
        fn number_comparisons_match_rust(a in 0u64..1000, b in 0u64..1000) {
            let mut m = BTreeMap::new();
            m.insert("v".to_string(), VarValue::Number(a));
            for (op, expect) in [("==", a == b), ("!=", a != b), ("<", a < b),
                                 ("<=", a <= b), (">", a > b), (">=", a >= b)] {
                let c = IncludeCondition::parse(&format!("v {op} {b}")).unwrap();
                prop_assert_eq!(c.evaluate(&m), Ok(expect));
            }
        }

        #[test]
        fn roundtrip_display(name in "[a-z_][a-z0-9_]{0,8}", s in "[a-z0-9 ]{0,8}") {
            let text = format!("{name} != \"{s}\"");
            let c = IncludeCondition::parse(&text).unwrap();
            prop_assert_eq!(c.to_string(), text);
        }

        #[test]
        fn never_panics(s in ".*") {
            if let Ok(c) = IncludeCondition::parse(&s) {
                let _ = c.evaluate(&BTreeMap::new());
            }
        }
    }
}
