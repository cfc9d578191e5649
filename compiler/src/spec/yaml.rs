//! A small YAML tree with source positions, built from `marked-yaml`. The spec reader works on
//! this tree so that every value it rejects can be reported with its line and column.

use crate::error::Loc;

/// A YAML value with the position where it starts.
#[derive(Clone, Debug)]
pub struct Y {
    pub loc: Loc,
    pub val: YVal,
}

#[derive(Clone, Debug)]
pub enum YVal {
    Scalar(String),
    Seq(Vec<Y>),
    /// Keys keep their own positions; order is file order.
    Map(Vec<(Key, Y)>),
}

#[derive(Clone, Debug)]
pub struct Key {
    pub loc: Loc,
    pub name: String,
}

/// Why a text is not a YAML mapping we can read.
#[derive(Clone, Debug)]
pub struct YamlError {
    pub loc: Loc,
    pub message: String,
}

/// Deeper nesting than any spec needs; refusing it keeps recursion bounded.
pub const MAX_DEPTH: usize = 64;

/// Parses `text` (a whole file) into a tree whose top level is a mapping.
pub fn parse(text: &str) -> Result<Y, YamlError> {
    if let Some(loc) = too_deep(text) {
        return Err(YamlError {
            loc,
            message: format!("nesting deeper than {MAX_DEPTH} levels"),
        });
    }
    let opts = marked_yaml::LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    match marked_yaml::parse_yaml_with_options(0, text, opts) {
        Ok(node) => Ok(convert(&node)),
        Err(e) => Err(load_error(e)),
    }
}

fn loc_of(span: &marked_yaml::Span) -> Loc {
    span.start()
        .map(|m| Loc {
            line: m.line(),
            col: m.column(),
        })
        .unwrap_or_default()
}

fn convert(node: &marked_yaml::Node) -> Y {
    use marked_yaml::Node;
    let loc = loc_of(node.span());
    let val = match node {
        Node::Scalar(s) => YVal::Scalar(s.as_str().to_string()),
        Node::Sequence(s) => YVal::Seq(s.iter().map(convert).collect()),
        Node::Mapping(m) => YVal::Map(
            m.iter()
                .map(|(k, v)| {
                    (
                        Key {
                            loc: loc_of(k.span()),
                            name: k.as_str().to_string(),
                        },
                        convert(v),
                    )
                })
                .collect(),
        ),
    };
    Y { loc, val }
}

fn load_error(e: marked_yaml::LoadError) -> YamlError {
    use marked_yaml::LoadError::*;
    let at = |m: &marked_yaml::Marker| Loc {
        line: m.line(),
        col: m.column(),
    };
    match e {
        TopLevelMustBeMapping(m) => YamlError {
            loc: at(&m),
            message: "the top level of a spec must be a mapping (key: value lines)".into(),
        },
        TopLevelMustBeSequence(m) => YamlError {
            loc: at(&m),
            message: "unexpected top-level sequence".into(),
        },
        UnexpectedAnchor(m) => YamlError {
            loc: at(&m),
            message: "YAML anchors and aliases are not supported in specs".into(),
        },
        MappingKeyMustBeScalar(m) => YamlError {
            loc: at(&m),
            message: "mapping keys must be plain names".into(),
        },
        UnexpectedTag(m) => YamlError {
            loc: at(&m),
            message: "YAML tags (!name) are not supported in specs".into(),
        },
        ScanError(m, se) => YamlError {
            loc: at(&m),
            message: format!("YAML syntax error: {}", se.info()),
        },
        DuplicateKey(inner) => {
            let first = inner.prev_key.span().start().map(at).unwrap_or_default();
            YamlError {
                loc: inner.key.span().start().map(at).unwrap_or_default(),
                message: format!(
                    "duplicate key '{}' (first defined at line {}, column {})",
                    inner.key.as_str(),
                    first.line,
                    first.col
                ),
            }
        }
    }
}

/// Finds flow/block nesting deeper than [`MAX_DEPTH`] with a cheap scan, before the parser
/// (whose tree building and dropping recurse) sees the text.
fn too_deep(text: &str) -> Option<Loc> {
    let (mut depth, mut line, mut col) = (0usize, 1usize, 0usize);
    for ch in text.chars() {
        col += 1;
        match ch {
            '\n' => {
                line += 1;
                col = 0;
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(Loc { line, col });
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // Block nesting: indentation (or '- ' runs) deeper than 2 columns per level.
    for (i, l) in text.lines().enumerate() {
        let indent = l.len() - l.trim_start_matches([' ', '-']).len();
        if indent > 2 * MAX_DEPTH + 2 {
            return Some(Loc {
                line: i + 1,
                col: indent + 1,
            });
        }
    }
    None
}

impl Y {
    pub fn as_str(&self) -> Option<&str> {
        match &self.val {
            YVal::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Y)]> {
        match &self.val {
            YVal::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Y]> {
        match &self.val {
            YVal::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// A word for error messages: "a mapping", "a list", "'abc'".
    pub fn describe(&self) -> String {
        match &self.val {
            YVal::Scalar(s) if s.is_empty() => "an empty value".into(),
            YVal::Scalar(s) => format!("'{s}'"),
            YVal::Seq(_) => "a list".into(),
            YVal::Map(_) => "a mapping".into(),
        }
    }

    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Y> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }
}
