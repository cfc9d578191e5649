//! What the caller expects a weight directory to hold: tensor names, shapes, initialisation
//! rule for random weights, and the stored float dtypes the loader accepts.

use std::fmt;

/// How [`random_tensor_bf16`](super::random_tensor_bf16) fills a tensor when real weights are
/// not available.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightInit {
    /// Independent normal values with mean 0 and standard deviation `std` (0.02 for Qwen3's
    /// linear and embedding weights), rounded to bf16.
    Normal {
        /// Standard deviation of the normal distribution; must be finite and >= 0.
        std: f32,
    },
    /// Every element is 1.0 (RMSNorm weights).
    Ones,
}

/// One tensor the model expects, by its Hugging Face name.
///
/// Tied tensors (`lm_head.weight` when `tie_word_embeddings` is true) are *not* listed: the
/// caller resolves tying itself.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightSpec {
    /// HF tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Shape in HF order (linear weights are `[out, in]`, row-major).
    pub shape: Vec<usize>,
    /// Initialisation used for random weights of this shape.
    pub init: WeightInit,
}

impl WeightSpec {
    /// A spec with [`WeightInit::Normal`] of standard deviation `std`.
    pub fn normal(name: impl Into<String>, shape: Vec<usize>, std: f32) -> Self {
        WeightSpec {
            name: name.into(),
            shape,
            init: WeightInit::Normal { std },
        }
    }

    /// A spec with [`WeightInit::Ones`].
    pub fn ones(name: impl Into<String>, shape: Vec<usize>) -> Self {
        WeightSpec {
            name: name.into(),
            shape,
            init: WeightInit::Ones,
        }
    }

    /// Number of elements (product of the shape; 1 for a scalar). `None` on overflow.
    pub fn numel(&self) -> Option<usize> {
        numel(&self.shape)
    }
}

/// Product of a shape's dimensions, `None` if it overflows `usize`.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Formats a shape as `[2048, 1024]`.
pub(crate) struct ShapeDisplay<'a>(pub &'a [usize]);

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// The float dtypes a weight directory may store (safetensors names `BF16`, `F16`, `F32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// bfloat16 (the dtype of Qwen3 checkpoints and of the directories pio writes).
    BF16,
    /// IEEE half precision.
    F16,
    /// IEEE single precision.
    F32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::BF16 | DType::F16 => 2,
            DType::F32 => 4,
        }
    }

    /// The dtype's name in a safetensors header (`"BF16"`, `"F16"`, `"F32"`).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::BF16 => "BF16",
            DType::F16 => "F16",
            DType::F32 => "F32",
        }
    }

    /// Parses a safetensors dtype name; `None` for anything that is not one of the three
    /// float dtypes above (e.g. `I64`, `BOOL`, `F64`).
    pub fn from_safetensors_name(name: &str) -> Option<DType> {
        match name {
            "BF16" => Some(DType::BF16),
            "F16" => Some(DType::F16),
            "F32" => Some(DType::F32),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::F32 => "f32",
        })
    }
}

/// Size in bytes of a safetensors dtype by its header name, for any dtype the format defines
/// (used to validate byte ranges of tensors we will then reject as non-float).
pub(crate) fn safetensors_dtype_size(name: &str) -> Option<usize> {
    Some(match name {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" | "C64" => 8,
        _ => return None,
    })
}
