//! Codegen settings and the tuning constants behind them: the knobs a front end may set
//! ([`CodegenOptions`], [`GemvTuning`]) and the defaults chosen by measurement.

/// Codegen settings.
#[derive(Clone, Debug)]
pub struct CodegenOptions {
    /// Most tokens in one prefill step.
    pub max_prefill: usize,
    /// KV-cache length; at most the spec's bound (default: the bound, capped at 32,768).
    pub max_context: Option<usize>,
    /// Launch shape of the decode GEMVs.
    pub gemv: GemvTuning,
    /// Spans per kv head of the decode attention, at most (a tuning knob).
    pub attention_spans: usize,
    /// Positions per block of the batching engine's paged KV pool.
    pub block_size: usize,
    /// Query heads of a kv head per block of the paged decode attention of the batch list (the
    /// single-sequence list takes [`PAGED_SINGLE_ATTENTION_HEADS_PER_BLOCK`]; a divisor of the
    /// group; `None`: the default, [`PAGED_ATTENTION_HEADS_PER_BLOCK`] or the group if less).
    pub paged_attention_heads: Option<usize>,
    /// Blocks per SM the paged decode attention's registers must allow (its
    /// `__launch_bounds__`; 0: the compiler's choice). A tuning knob: every setting computes the
    /// same.
    /// `None`: [`paged_attention_min_blocks`]'s choice.
    pub paged_attention_min_blocks: Option<usize>,
    /// Blocks per kv head the paged decode attention aims at (each token's context is split
    /// over ceil(this / tokens) blocks). A tuning knob: every setting computes the same up to
    /// the order of the splits' f32 sums. `None`: [`PAGED_ATTENTION_TARGET_BLOCKS`].
    pub paged_attention_target_blocks: Option<usize>,
    /// The elementwise kernels and the per-head ops read and write rows in 16-byte (per-head:
    /// 4- to 16-byte) pieces where the shapes allow, instead of one element per thread. Every
    /// setting computes the same bits. On by default (off: `PIO_WIDE_ROW_ACCESS=0`,
    /// `pio-compile --wide-row-access false`).
    pub wide_row_access: bool,
    /// The batching engine's chunk steps take their attention in one pass over the keys
    /// (FlashAttention-2's online softmax: two launches) instead of two (the rows' max and sum,
    /// then P.V: three launches). Not HF's eager rounding of P (bf16 of exp(s - max) before the
    /// division by the sum, not after); the batch-1 lists keep it either way. Off by default
    /// until GPU-checked (`PIO_ONLINE_CHUNK_ATTENTION=1`, `pio-compile
    /// --online-chunk-attention`).
    pub online_chunk_attention: bool,
    /// Blocks per SM the registers of the chunk steps' P.V (or one-pass) attention kernel must
    /// allow (its `__launch_bounds__`; 0: the compiler's choice, which gives it 199 registers for
    /// head_dim 128, 2 blocks per SM: a 1,974-token step's 496 blocks take 1.88 waves; with 3,
    /// 168 registers, 84 bytes spilled, 1.25 waves). A tuning knob: every setting computes the
    /// same (`PIO_CHUNK_ATTENTION_MIN_BLOCKS`, `pio-compile --chunk-attention-min-blocks`).
    pub chunk_attention_min_blocks: usize,
    /// The batching engine's decode-batch list runs each projection (but the logits) as one
    /// fused tensor-core kernel (`row_gemm.cu`: the RMSNorm, the product on mma.sync and the
    /// residual add, bias or SwiGLU, k split over a thread-block cluster) instead of an RMSNorm
    /// launch, a cuBLAS GEMM and an epilogue launch. Its residual add rounds the
    /// product first, as HF and the decode GEMV do (cuBLAS's beta = 1 rounds once). Off by
    /// default until GPU-checked (`PIO_FUSED_ROW_GEMM=1`, `pio-compile --fused-row-gemm`).
    pub fused_row_gemm: bool,
}

impl Default for CodegenOptions {
    fn default() -> Self {
        CodegenOptions {
            max_prefill: DEFAULT_PREFILL,
            max_context: None,
            gemv: GemvTuning::default(),
            attention_spans: ATTENTION_SPANS,
            block_size: DEFAULT_BLOCK_SIZE,
            paged_attention_heads: None,
            paged_attention_min_blocks: None,
            paged_attention_target_blocks: None,
            wide_row_access: true,
            online_chunk_attention: false,
            chunk_attention_min_blocks: 0,
            fused_row_gemm: false,
        }
    }
}

/// Launch shape of the decode GEMV kernels (a tuning knob: every setting computes the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemvTuning {
    /// Warps per block.
    pub warps: usize,
    /// Output rows per warp iteration for matrices of at least 2,048 rows (SwiGLU: always 1).
    pub tall_rows: usize,
    /// Most blocks per launch (warps loop over the remaining rows).
    pub max_blocks: usize,
    /// Most 16-byte loads per lane and row issued before their FMAs.
    pub max_unroll: usize,
}

impl Default for GemvTuning {
    fn default() -> Self {
        GemvTuning {
            warps: 8,
            tall_rows: 1,
            // Enough that every warp gets one row group for all but the LM head, which loops
            // (H100: 132 SMs).
            max_blocks: 32 * 132,
            max_unroll: 12,
        }
    }
}

impl GemvTuning {
    /// Reads `warps=8,rows=2,blocks=4224,unroll=10` (any subset; the rest stay default).
    pub fn parse(text: &str) -> Result<GemvTuning, String> {
        let mut t = GemvTuning::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("GEMV setting '{part}' is not key=value"))?;
            let v: usize = value.parse().ok().filter(|&v| v > 0).ok_or_else(|| {
                format!("GEMV setting '{key}': '{value}' is not a positive integer")
            })?;
            match key {
                "warps" if v <= 32 => t.warps = v,
                "rows" if v <= 4 => t.tall_rows = v,
                "blocks" => t.max_blocks = v,
                "unroll" if v <= 16 => t.max_unroll = v,
                "warps" | "rows" | "unroll" => {
                    return Err(format!("GEMV setting '{key}={v}' is out of range"))
                }
                _ => {
                    return Err(format!(
                        "unknown GEMV setting '{key}' (warps, rows, blocks, unroll)"
                    ))
                }
            }
        }
        Ok(t)
    }
}

/// The KV-cache length when none is asked for: the spec's bound, at most this.
pub const DEFAULT_CONTEXT_CAP: usize = 32_768;
/// Most tokens per prefill step when none is asked for.
pub const DEFAULT_PREFILL: usize = 2048;
/// Most tokens one prefill step may be compiled for (its grids' token dimension).
pub const MAX_PREFILL: usize = 65_535;
/// Positions per paged KV block by default (vLLM's default too).
pub const DEFAULT_BLOCK_SIZE: usize = 16;
/// Blocks per kv head in the decode attention kernel's cluster (the portable cluster size).
pub(super) const ATTENTION_CLUSTER: usize = 8;
/// Positions per block of the decode attention's shortest spans: a cluster spans 8 x 64 = 512
/// positions (128 was slower at 1,024).
pub(super) const ATTENTION_SCORES_PER_BLOCK: usize = 64;
/// Spans (clusters) per kv head of the decode attention at most, by default: longer contexts
/// take longer spans. H100, tensor-core kernel, 0.6B / 4B decode tokens/s at 4,096 and 16,384
/// positions (two calls): 8 spans 807 / 244 and 561 / 205; 6 spans 803 / 245 and 551 / 201;
/// 5 spans 949-948 / 256 and 609-617 / 216-217; 4 spans 868-876 / 256 and 589-594 / 214-215.
pub const ATTENTION_SPANS: usize = 5;
/// The most spans per kv head a front end accepts for the decode attention.
pub const MAX_ATTENTION_SPANS: usize = 1024;
/// Rows of logits the io region holds for callers that want every prompt row's logits (parity
/// checks, `pio logits`): 128 x 151,936 bf16 = 39 MB, where `max_prefill` rows took 156 MB at
/// 512 and 622 MB at 2,048.
pub(super) const LOGITS_ROWS: usize = 128;
/// Threads per block of the decode attention.
pub(super) const ATTENTION_THREADS: usize = 128;
/// Key (and value) rows a warp of the decode attention loads per round (tensor-core paths).
pub(super) const ATTENTION_ROWS_PER_WARP: usize = 32;
/// Rounds of rows a warp of the decode attention streams into L2 ahead of its loads.
pub(super) const ATTENTION_PREFETCH_ROUNDS: usize = 1;
/// Blocks the paged decode attention aims at per kv head (its launch splits each token's
/// context over ceil(this / tokens) blocks): about 4 per SM of an H100 / H200 (132 SMs) for
/// 8 kv heads. H100, Qwen3-0.6B, 128 requests of 512 + 256 tokens, output tokens/s (one call,
/// 2026-12-07): 19,481 with this, 18,444 with 4x (3 splits per token at 128), 18,059 with 8x
/// (`PIO_PAGED_ATTENTION_TARGET_BLOCKS`); `PIO_PAGED_ATTENTION_MIN_BLOCKS=8` 14,195.
pub const PAGED_ATTENTION_TARGET_BLOCKS: usize = 4 * 132;
/// Context splits per token of the paged decode attention at most.
pub(super) const PAGED_ATTENTION_MAX_SPLITS: usize = 32;
/// Keys per split of the paged decode attention at least.
pub(super) const PAGED_ATTENTION_MIN_SPAN: usize = 64;
/// Warps per block of the paged decode attention.
pub(super) const PAGED_ATTENTION_DECODE_WARPS: usize = 4;
/// Bytes of scores (f32 per query head and key) a block of the paged decode attention keeps
/// in shared memory: the chunk of keys it scores before the values.
pub(super) const PAGED_ATTENTION_SCORE_BYTES: usize = 16 << 10;
/// 16-byte loads per lane in flight in the paged decode attention.
pub(super) const PAGED_ATTENTION_LOADS: usize = 8;
/// Query heads of a kv head per block of the paged decode attention by default (or the whole
/// group where it is smaller). H200, 128 requests of 512 + 256 tokens, output tokens/s (one
/// call, 2026-12-03): Qwen3-4B (groups of 4) 7,666 with 4 per block, 7,514 with 2, 7,152 with
/// 1; Qwen3-0.6B (groups of 2) 17,463 with 2, 17,126 with 1: the whole group wins.
pub const PAGED_ATTENTION_HEADS_PER_BLOCK: usize = 8;
/// Query heads per block of the paged decode attention in the single-sequence list (a batch of
/// one): H200, Qwen3-4B, one request of 512 (4,096) + 256 tokens, output tokens/s (one call,
/// 2026-12-04): 278 (216) with the whole group of 4 per block, 312 (248) with 2, 319 (253)
/// with 1; 32-key splits instead of 64 changed nothing beyond noise.
pub const PAGED_SINGLE_ATTENTION_HEADS_PER_BLOCK: usize = 1;
/// Blocks per SM the paged decode attention's registers allow at least, by default, where a
/// lane holds 8 or more 16-byte pieces of queries (heads per block x pieces per lane; below
/// that, the compiler's choice). H200, 128 requests of 512 + 256 tokens, one call (2026-12-03):
/// Qwen3-4B (4 heads x 2 pieces; 244 registers and 2 blocks per SM before the queries and the
/// accumulators stopped overlapping) 7,359 output tokens/s with the compiler's choice, 7,797
/// with 3, 7,985 with 4. Registers (NVRTC's ptxas, sm_90, 2026-12-07): the 0.6B's batch kernel
/// (2 heads x 2 pieces) 119 with the compiler's choice (4 blocks per SM: 528 slots for the ~600
/// working blocks of 75 sequences), 96 with 5 (80 bytes spilled), 80 with 6 (144), 64 with 8
/// (500; measured -27% on an H100); the 4B's 128 with 4 (240 bytes spilled).
pub const PAGED_ATTENTION_MIN_BLOCKS: usize = 4;

/// The paged decode attention's `__launch_bounds__` minimum blocks per SM for `heads_per_block`
/// heads of `pieces` 16-byte pieces per lane (0: none).
pub fn paged_attention_min_blocks(heads_per_block: usize, pieces: usize) -> usize {
    if heads_per_block * pieces >= 8 {
        PAGED_ATTENTION_MIN_BLOCKS
    } else {
        0
    }
}
/// Warps per block of the per-head kernels and the scalar prefill attention.
pub(super) const WARPS: usize = 4;
/// What a decode GEMV's warps prefetch into L2 (H100: 50 MB) before their first rows, in all.
pub(super) const GEMV_L2_PREFETCH_BYTES: usize = 16 << 20;
