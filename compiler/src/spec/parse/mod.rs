//! Parsing family and variant files into [`Family`] and [`Variant`], collecting every problem.
//!
//! [`Family`]: super::model::Family
//! [`Variant`]: super::model::Variant

mod family;
mod graph;
mod variant;

pub use family::parse_family;
pub use variant::parse_variant;

use super::model::{HyperType, HyperValue};
use super::reader::{parse_float, parse_int, Reader};
use super::yaml::Y;

/// Whether a parsed file is a variant (it names a family and has a `name`) rather than a
/// family.
pub fn is_variant(root: &Y) -> bool {
    root.get("name").is_some() && root.get("layers").is_none()
}

/// A rope scaling written as config.json has it (`null` or a map), with a located error.
pub fn rope_scaling_value(r: &mut Reader, y: &Y, path: &str) -> Option<HyperValue> {
    match pio_artifact::RopeScaling::from_json(&crate::spec::reader::yaml_json(y)) {
        Ok(s) => Some(HyperValue::Rope(s)),
        Err(e) => {
            r.err(y.loc, path, e);
            None
        }
    }
}

/// A hyperparameter value of type `ty` (an integer is accepted where a float is expected).
pub fn hyper_value(r: &mut Reader, y: &Y, ty: HyperType, path: &str) -> Option<HyperValue> {
    let s = y.as_str().unwrap_or("");
    match ty {
        HyperType::RopeScaling => rope_scaling_value(r, y, path),
        HyperType::Int => match parse_int(s) {
            Some(v) => Some(HyperValue::Int(v)),
            None => {
                r.err(
                    y.loc,
                    path,
                    format!("expected an integer, found {}", y.describe()),
                );
                None
            }
        },
        HyperType::Float => match parse_float(s) {
            Some(v) => Some(HyperValue::Float(v)),
            None => {
                r.err(
                    y.loc,
                    path,
                    format!("expected a number, found {}", y.describe()),
                );
                None
            }
        },
        HyperType::Bool => match s {
            "true" => Some(HyperValue::Bool(true)),
            "false" => Some(HyperValue::Bool(false)),
            _ => {
                r.err(
                    y.loc,
                    path,
                    format!("expected true or false, found {}", y.describe()),
                );
                None
            }
        },
    }
}
