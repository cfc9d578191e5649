//! The parsed spec: a family (the graph, written once) and a variant (hyperparameters and
//! manifest). Positions are kept so that later stages can still point into the files.

use super::yaml::{Key, Y};
use crate::error::Loc;
use crate::ir::{DType, RopeScaling};
use std::path::PathBuf;

/// The type of a hyperparameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HyperType {
    Int,
    Float,
    /// `true` or `false` (a choice such as tying the LM head to the embedding).
    Bool,
    /// config.json's `rope_scaling`: `null` or `{rope_type: linear | llama3 | yarn, ...}`.
    RopeScaling,
}

impl HyperType {
    /// The spelling in family files (`type: int`).
    pub fn name(self) -> &'static str {
        match self {
            HyperType::Int => "int",
            HyperType::Float => "float",
            HyperType::Bool => "bool",
            HyperType::RopeScaling => "rope_scaling",
        }
    }

    pub const ALL: [HyperType; 4] = [
        HyperType::Int,
        HyperType::Float,
        HyperType::Bool,
        HyperType::RopeScaling,
    ];
}

/// A hyperparameter's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HyperValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A rope scaling (`null` is [`RopeScaling::Default`]).
    Rope(RopeScaling),
}

impl HyperValue {
    /// A number's value (None for a bool).
    pub fn as_f64(self) -> Option<f64> {
        match self {
            HyperValue::Int(v) => Some(v as f64),
            HyperValue::Float(v) => Some(v),
            HyperValue::Bool(_) | HyperValue::Rope(_) => None,
        }
    }

    pub fn as_int(self) -> Option<i64> {
        match self {
            HyperValue::Int(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(self) -> Option<bool> {
        match self {
            HyperValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_rope_scaling(self) -> Option<RopeScaling> {
        match self {
            HyperValue::Rope(s) => Some(s),
            _ => None,
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        match self {
            HyperValue::Int(v) => v.into(),
            HyperValue::Float(v) => v.into(),
            HyperValue::Bool(v) => v.into(),
            HyperValue::Rope(s) => s.to_json(),
        }
    }
}

/// A hyperparameter declared by a family.
#[derive(Clone, Debug)]
pub struct HyperDecl {
    pub name: String,
    pub ty: HyperType,
    pub default: Option<HyperValue>,
    pub loc: Loc,
}

/// A symbolic dimension and the hyperparameter that bounds it.
#[derive(Clone, Debug)]
pub struct DimDecl {
    pub name: String,
    pub bound: String,
    pub loc: Loc,
}

/// A graph input.
#[derive(Clone, Debug)]
pub struct InputDecl {
    pub name: String,
    pub role: crate::ir::InputRole,
    pub dtype: DType,
    pub shape: Y,
    pub loc: Loc,
}

/// How random weights are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitKind {
    Normal,
    Ones,
}

/// A weight and its checkpoint binding.
#[derive(Clone, Debug)]
pub struct WeightDecl {
    pub name: String,
    pub shape: Y,
    /// HF tensor name; `{layer}` stands for the layer index in layer weights.
    pub hf: String,
    pub hf_loc: Loc,
    pub init: InitKind,
    pub tie_to: Option<(String, Loc)>,
    /// `tie_to: {weight: W, if: H}`: tied only where the bool hyperparameter H is true (the
    /// variant's choice); resolved when the spec loads.
    pub tie_if: Option<(String, Loc)>,
    /// `shard: rows`, or `shard: {split: rows, groups: num_heads}`: how the weight splits over
    /// tensor-parallel ranks.
    pub shard: Option<ShardDecl>,
    pub loc: Loc,
    pub path: String,
}

/// A weight's `shard:` attribute: the axis, and the groups it cuts into (an integer expression
/// of hyperparameters; absent: the axis's extent, any row may go anywhere).
#[derive(Clone, Debug)]
pub struct ShardDecl {
    pub axis: pio_artifact::ShardAxis,
    pub groups: Option<Y>,
    pub loc: Loc,
}

/// One op: `name: {op: kind, in: [...], attr: value}`.
#[derive(Clone, Debug)]
pub struct OpDecl {
    pub name: String,
    pub loc: Loc,
    pub path: String,
    pub op: String,
    pub op_loc: Loc,
    pub inputs: Vec<(String, Loc)>,
    pub in_loc: Loc,
    pub attrs: Vec<(Key, Y)>,
}

/// The repeated decoder block.
#[derive(Clone, Debug)]
pub struct LayersDecl {
    pub count: (String, Loc),
    pub input: (String, Loc),
    pub output: (String, Loc),
    pub weights: Vec<WeightDecl>,
    pub ops: Vec<OpDecl>,
    pub loc: Loc,
}

/// A model family: the graph written once.
#[derive(Clone, Debug)]
pub struct Family {
    pub file: PathBuf,
    pub name: String,
    pub architecture: String,
    pub dtype: DType,
    pub hyper: Vec<HyperDecl>,
    pub dims: Vec<DimDecl>,
    /// config.json fields; string values `$name` stand for hyperparameters.
    pub hf_config: Vec<(Key, Y)>,
    /// What transformers assumes for hf_config fields a config.json may leave out: a value,
    /// `$name` (a hyperparameter) or `$(expression)` (an integer expression over them).
    pub hf_defaults: Vec<(Key, Y)>,
    pub inputs: Vec<InputDecl>,
    pub weights: Vec<WeightDecl>,
    pub prologue: Vec<OpDecl>,
    pub layers: Option<LayersDecl>,
    pub epilogue: Vec<OpDecl>,
    /// Each output's role (its key), the tensor it returns, and where.
    pub outputs: Vec<(crate::ir::OutputRole, String, Loc)>,
}

/// Default sampling parameters of a model (generation_config.json's).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingDefaults {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: i64,
    pub min_p: f64,
    pub presence_penalty: f64,
    pub repetition_penalty: f64,
}

impl Default for SamplingDefaults {
    fn default() -> Self {
        SamplingDefaults {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            presence_penalty: 0.0,
            repetition_penalty: 1.0,
        }
    }
}

/// Discovery and generation data of a variant: the spec is the manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub sampling: SamplingDefaults,
    /// tokenizer.json used with random weights and written by `pio init-weights`.
    pub tokenizer: PathBuf,
    /// The tokenizer_config.json whose `chat_template` the model uses.
    pub chat_template: PathBuf,
    /// Whether the chat template takes `enable_thinking`.
    pub thinking: bool,
}

/// A variant file: names a family, sets hyperparameters.
#[derive(Clone, Debug)]
pub struct Variant {
    pub file: PathBuf,
    pub family: (String, Loc),
    pub name: String,
    pub description: String,
    pub hyper: Vec<(String, HyperValue, Loc)>,
    pub hyper_loc: Loc,
    pub manifest: Manifest,
}
