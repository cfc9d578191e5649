//! Element types, dimensions and tensor types of the IR.

use serde::{Deserialize, Serialize};
use std::fmt;

pub use pio_artifact::DType;

/// One dimension: a number known at compile time, or a symbolic dimension (`batch`, `seq`,
/// `ctx`) whose upper bound the graph declares.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Fixed(usize),
    Sym(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// A shape, outermost dimension first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn last(&self) -> Option<&Dim> {
        self.0.last()
    }

    /// Product of the fixed dimensions (symbolic ones count as 1).
    pub fn fixed_product(&self) -> usize {
        self.0
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Sym(_) => 1,
            })
            .product()
    }

    /// The last dimension if it is fixed, else 0.
    pub fn fixed_product_last(&self) -> usize {
        match self.0.last() {
            Some(Dim::Fixed(n)) => *n,
            _ => 0,
        }
    }

    /// The symbolic dimensions, in order.
    pub fn symbols(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|d| match d {
                Dim::Sym(s) => Some(s.as_str()),
                Dim::Fixed(_) => None,
            })
            .collect()
    }

    /// All dimensions as numbers, if none is symbolic.
    pub fn as_fixed(&self) -> Option<Vec<usize>> {
        self.0
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Some(*n),
                Dim::Sym(_) => None,
            })
            .collect()
    }

    /// The shape with every symbolic dimension replaced by `value(name)`.
    pub fn concrete(&self, value: &dyn Fn(&str) -> usize) -> Vec<usize> {
        self.0
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Sym(s) => value(s),
            })
            .collect()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Type of a value in the graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> Self {
        TensorType { dtype, shape }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

/// A symbolic dimension and its declared upper bound (`seq <= max_context`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymDim {
    pub name: String,
    pub bound: usize,
}
