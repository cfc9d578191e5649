//! Reading values out of the YAML tree while collecting every problem (not just the first).

use super::yaml::{Key, YVal, Y};
use crate::error::{Loc, SpecError};
use std::path::{Path, PathBuf};

/// Collects the problems found in one file.
pub struct Reader {
    pub file: PathBuf,
    pub errors: Vec<SpecError>,
}

impl Reader {
    pub fn new(file: &Path) -> Self {
        Reader {
            file: file.to_path_buf(),
            errors: Vec::new(),
        }
    }

    pub fn err(&mut self, loc: Loc, path: &str, message: impl Into<String>) {
        self.errors.push(SpecError {
            file: self.file.clone(),
            loc,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// The mapping at `y`, or an error.
    pub fn map<'a>(&mut self, y: &'a Y, path: &str) -> Option<&'a [(Key, Y)]> {
        let m = y.as_map();
        if m.is_none() {
            self.err(
                y.loc,
                path,
                format!("expected a mapping, found {}", y.describe()),
            );
        }
        m
    }

    /// The list at `y`, or an error.
    pub fn seq<'a>(&mut self, y: &'a Y, path: &str) -> Option<&'a [Y]> {
        let s = y.as_seq();
        if s.is_none() {
            self.err(
                y.loc,
                path,
                format!("expected a list, found {}", y.describe()),
            );
        }
        s
    }

    /// Reports every key of `map` not in `allowed`.
    pub fn only_keys(&mut self, map: &[(Key, Y)], path: &str, allowed: &[&str]) {
        for (k, _) in map {
            if !allowed.contains(&k.name.as_str()) {
                self.err(
                    k.loc,
                    path,
                    format!(
                        "unknown key '{}' (expected one of: {})",
                        k.name,
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    /// The value of a required key; `at` is where to point when it is missing.
    pub fn required<'a>(
        &mut self,
        map: &'a [(Key, Y)],
        key: &str,
        path: &str,
        at: Loc,
    ) -> Option<&'a Y> {
        let v = map.iter().find(|(k, _)| k.name == key).map(|(_, v)| v);
        if v.is_none() {
            self.err(at, path, format!("missing required key '{key}'"));
        }
        v
    }

    /// A non-empty string scalar.
    pub fn string(&mut self, y: &Y, path: &str) -> Option<String> {
        match y.as_str() {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            _ => {
                self.err(
                    y.loc,
                    path,
                    format!("expected a name, found {}", y.describe()),
                );
                None
            }
        }
    }

    /// An identifier: letters, digits and '_', not starting with a digit.
    pub fn ident(&mut self, y: &Y, path: &str) -> Option<String> {
        let s = self.string(y, path)?;
        if is_ident(&s) {
            Some(s)
        } else {
            self.err(
                y.loc,
                path,
                format!("'{s}' is not a valid name (letters, digits and '_' only)"),
            );
            None
        }
    }

    pub fn int(&mut self, y: &Y, path: &str) -> Option<i64> {
        match y.as_str().and_then(parse_int) {
            Some(v) => Some(v),
            None => {
                self.err(
                    y.loc,
                    path,
                    format!("expected an integer, found {}", y.describe()),
                );
                None
            }
        }
    }

    pub fn float(&mut self, y: &Y, path: &str) -> Option<f64> {
        match y.as_str().and_then(parse_float) {
            Some(v) => Some(v),
            None => {
                self.err(
                    y.loc,
                    path,
                    format!("expected a number, found {}", y.describe()),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, y: &Y, path: &str) -> Option<bool> {
        match y.as_str() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                self.err(
                    y.loc,
                    path,
                    format!("expected true or false, found {}", y.describe()),
                );
                None
            }
        }
    }
}

pub fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Integers as YAML writes them (no exponent, no fraction).
pub fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

/// Finite numbers: `1e-6`, `1000000`, `0.02`.
pub fn parse_float(s: &str) -> Option<f64> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `a.b` or `a` when the parent is empty.
/// A YAML scalar as config.json would hold it: a bool, `null`, an integer, a float or a string.
pub fn scalar_json(s: &str) -> serde_json::Value {
    use serde_json::Value;
    if s == "true" || s == "false" {
        Value::Bool(s == "true")
    } else if s == "null" {
        Value::Null
    } else if let Some(i) = parse_int(s) {
        i.into()
    } else if let Some(x) = parse_float(s) {
        x.into()
    } else {
        Value::String(s.to_string())
    }
}

/// A YAML value as JSON (scalars by [`scalar_json`]).
pub fn yaml_json(y: &Y) -> serde_json::Value {
    use serde_json::Value;
    match &y.val {
        YVal::Scalar(s) => scalar_json(s),
        YVal::Seq(items) => Value::Array(items.iter().map(yaml_json).collect()),
        YVal::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.name.clone(), yaml_json(v)))
                .collect(),
        ),
    }
}

pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}
