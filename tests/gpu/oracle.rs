//! The per-kernel oracle's observer: around each step of an observed GPU run it gives the
//! nodes that step starts random inputs (written into their operands' device memory, the KV
//! cache included), reads back what the nodes' steps computed, evaluates each node alone on
//! the CPU (`interp::eval_node`, f32, fused ops through their decomposition) on the same
//! inputs, and records the gap.

use half::bf16;
use pio::artifact::{Artifact, CacheKind, Phase, Region, Step};
use pio::compiler::codegen::PhaseTrace;
use pio::compiler::interp::{eval_node, Tensor};
use pio::compiler::ir::{Graph, NodeId, Op};
use pio::runtime::cuda::observe::{DeviceMemory, StepAt, StepObserver};
use std::collections::HashMap;

/// Operands of at most this many bytes are given random values; larger ones (the embedding
/// table, a tied head) are read back as they are.
const INJECT_MAX_BYTES: usize = 64 << 20;

/// One sequence of the observed step: its tokens sit at `start..start + len`, and (paged) its
/// positions live in `blocks`.
#[derive(Clone, Debug)]
pub struct SeqRows {
    pub start: usize,
    pub len: usize,
    /// Empty for the batch-1 lists (the contiguous cache).
    pub blocks: Vec<u32>,
}

/// A node's gap to the CPU.
#[derive(Clone, Debug)]
pub struct Check {
    pub node: String,
    pub op: &'static str,
    pub phase: Phase,
    /// Relative L2 of the GPU's values to the CPU's rounded to bf16 (what a correct kernel
    /// returns up to its own arithmetic).
    pub rel_l2: f64,
    pub values: usize,
}

pub struct Oracle<'a> {
    pub g: &'a Graph,
    pub trace: &'a PhaseTrace,
    pub artifact: &'a Artifact,
    pub phase: Phase,
    pub seqs: Vec<SeqRows>,
    pub checks: Vec<Check>,
    /// The operands given to each node whose steps are running.
    operands: HashMap<NodeId, Vec<Tensor>>,
    first: HashMap<usize, Vec<NodeId>>,
    last: HashMap<usize, Vec<NodeId>>,
    rng: u64,
}

impl<'a> Oracle<'a> {
    pub fn new(
        g: &'a Graph,
        trace: &'a PhaseTrace,
        artifact: &'a Artifact,
        phase: Phase,
        seqs: Vec<SeqRows>,
        seed: u64,
    ) -> Oracle<'a> {
        let (mut first, mut last) = (HashMap::new(), HashMap::<usize, Vec<NodeId>>::new());
        let mut seen = std::collections::HashSet::new();
        for nodes in &trace.step_nodes {
            for &id in nodes {
                if !seen.insert(id) {
                    continue;
                }
                let steps = trace.steps_of(id);
                let (a, b) = (steps[0], *steps.last().unwrap());
                assert_eq!(
                    steps,
                    (a..=b).collect::<Vec<_>>(),
                    "{}: its steps are not consecutive",
                    g.node(id).name
                );
                first.entry(a).or_insert_with(Vec::new).push(id);
                last.entry(b).or_default().push(id);
            }
        }
        Oracle {
            g,
            trace,
            artifact,
            phase,
            seqs,
            checks: Vec::new(),
            operands: HashMap::new(),
            first,
            last,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn normal(&mut self) -> f32 {
        // splitmix64, two uniforms, Box-Muller.
        let mut next = || {
            self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (u, v) = (next().max(1e-12), next());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    /// Rows of the step that belong to real sequences (padding rows excluded).
    fn rows(&self) -> usize {
        self.seqs.iter().map(|s| s.len).sum()
    }

    /// The concrete dims of this step: (batch, seq, ctx).
    fn dims(&self) -> (usize, usize, usize) {
        let ctx = self.seqs.iter().map(|s| s.start + s.len).max().unwrap_or(0);
        if self.phase == Phase::Paged {
            (self.seqs.len(), 1, ctx)
        } else {
            (1, self.rows(), ctx)
        }
    }

    fn shape(&self, id: NodeId) -> Vec<usize> {
        let (b, s, c) = self.dims();
        self.g.node(id).ty.shape.concrete(&|d: &str| match d {
            "batch" => b,
            "seq" => s,
            _ => c,
        })
    }

    /// How a random operand of `consumer` at `slot` is drawn: scale and offset of N(0, 1).
    fn draw(&self, consumer: NodeId, slot: usize) -> (f32, f32) {
        let eps = match self.g.node(consumer).op {
            Op::RmsNorm { eps }
            | Op::NormRope { eps, .. }
            | Op::NormLinear { eps }
            | Op::NormLinearSwiGlu { eps }
            | Op::NormRopeKvWrite { eps, .. } => Some(eps as f32),
            _ => None,
        };
        match (eps, slot) {
            // Inputs of mean square 9 eps: an eps that is off by a factor shows.
            (Some(eps), 0) => (3.0 * eps.sqrt(), 0.0),
            // Norm weights around 1, not all ones: a weight applied wrongly shows.
            (Some(_), 1) => (0.25, 1.0),
            _ => (1.0, 0.0),
        }
    }

    /// Gives operand `slot` of `consumer` its value: random (written to the device) or read.
    fn operand(
        &mut self,
        mem: &DeviceMemory<'_>,
        consumer: NodeId,
        slot: usize,
        a: NodeId,
    ) -> Result<Tensor, String> {
        let node = self.g.node(a);
        if let Some((layer, cache)) = node.op.writes_cache() {
            return self.random_cache(mem, layer, cache, a);
        }
        let shape = self.shape(a);
        let place = self.trace.values[&a];
        let numel: usize = shape.iter().product();
        if let Op::Input(_) = node.op {
            // Token ids and positions as the runtime wrote them (i32).
            let bytes = mem
                .read(place.region, place.offset, numel * 4)
                .map_err(|e| e.to_string())?;
            let data = bytes
                .chunks(4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect();
            return Ok(Tensor::new(shape, data));
        }
        let width = node.ty.shape.fixed_product().max(1);
        let rows = numel / width;
        let stride = if rows == 1 { width } else { place.stride };
        let extent = ((rows - 1) * stride + width) * 2;
        let mut bytes = mem
            .read(place.region, place.offset, extent)
            .map_err(|e| e.to_string())?;
        let inject = numel * 2 <= INJECT_MAX_BYTES;
        let (scale, offset) = self.draw(consumer, slot);
        let mut data = Vec::with_capacity(numel);
        for r in 0..rows {
            for c in 0..width {
                let at = (r * stride + c) * 2;
                let v = if inject {
                    let v = bf16::from_f32(offset + scale * self.normal());
                    bytes[at..at + 2].copy_from_slice(&v.to_bits().to_le_bytes());
                    v
                } else {
                    bf16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
                };
                data.push(v.to_f32());
            }
        }
        if inject {
            mem.write(place.region, place.offset, &bytes)
                .map_err(|e| e.to_string())?;
        }
        Ok(Tensor::new(shape, data))
    }

    /// Random keys or values for every position each sequence sees, written into its cache;
    /// the tensor is `[sequences, ctx, kv_heads, head_dim]` (zeros past a sequence's end).
    fn random_cache(
        &mut self,
        mem: &DeviceMemory<'_>,
        layer: usize,
        cache: CacheKind,
        id: NodeId,
    ) -> Result<Tensor, String> {
        let node = self.g.node(id);
        let dims = node.ty.shape.as_fixed().unwrap_or_else(|| self.shape(id));
        let (kvh, d) = (dims[2], dims[3]);
        let (_, _, ctx) = self.dims();
        let mut view = CacheView::read(mem, self.artifact, self.phase, layer, cache)?;
        let seqs = self.seqs.clone();
        let mut data = vec![0f32; seqs.len() * ctx * kvh * d];
        for (s, seq) in seqs.iter().enumerate() {
            for p in 0..seq.start + seq.len {
                for h in 0..kvh {
                    let row: Vec<bf16> = (0..d).map(|_| bf16::from_f32(self.normal())).collect();
                    view.set(seq, h, p, &row);
                    let at = ((s * ctx + p) * kvh + h) * d;
                    for (x, v) in data[at..at + d].iter_mut().zip(&row) {
                        *x = v.to_f32();
                    }
                }
            }
        }
        view.write(mem)?;
        Ok(Tensor::new(vec![seqs.len(), ctx, kvh, d], data))
    }

    /// What node `id`'s steps left: its rows, or the cache rows it wrote this step.
    fn result(&self, mem: &DeviceMemory<'_>, id: NodeId, index: usize) -> Result<Tensor, String> {
        let node = self.g.node(id);
        let out_shape = self.out_shape(id);
        if let Some((layer, cache)) = node.op.writes_cache() {
            let (kvh, d) = (out_shape[2], out_shape[3]);
            let view = CacheView::read(mem, self.artifact, self.phase, layer, cache)?;
            let mut data = Vec::new();
            for seq in &self.seqs {
                for p in seq.start..seq.start + seq.len {
                    for h in 0..kvh {
                        data.extend(view.get(seq, h, p, d).iter().map(|v| v.to_f32()));
                    }
                }
            }
            return Ok(Tensor::new(out_shape, data));
        }
        let place = self.trace.values[&id];
        let width = node.ty.shape.fixed_product().max(1);
        let rows = out_shape.iter().product::<usize>() / width;
        // A marked logits GEMM computes the step's last row alone, at row 0.
        let last_row_only = matches!(
            &self.list()[index],
            Step::Gemm(g) if g.logits && self.phase != Phase::Paged
        );
        let (read_rows, shape) = if last_row_only {
            (1, vec![1, width])
        } else {
            (rows, out_shape)
        };
        let extent = ((read_rows - 1) * place.stride + width) * 2;
        let bytes = mem
            .read(place.region, place.offset, extent)
            .map_err(|e| e.to_string())?;
        let mut data = Vec::with_capacity(read_rows * width);
        for r in 0..read_rows {
            for c in 0..width {
                let at = (r * place.stride + c) * 2;
                data.push(bf16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32());
            }
        }
        Ok(Tensor::new(shape, data))
    }

    /// The shape `eval_node` computes for `id`: a cache write's rows, else the node's.
    fn out_shape(&self, id: NodeId) -> Vec<usize> {
        let mut shape = self.shape(id);
        if self.g.node(id).op.writes_cache().is_some() {
            let (b, s, _) = self.dims();
            shape[0] = b;
            shape[1] = s;
        }
        shape
    }

    fn list(&self) -> &'a [Step] {
        self.artifact.steps(self.phase)
    }

    fn check(&mut self, id: NodeId, gpu: Tensor) -> Result<(), String> {
        let operands = self.operands.remove(&id).expect("operands given before");
        let cpu = eval_node(self.g, id, &operands, &self.out_shape(id))
            .map_err(|e| format!("{}: {e}", self.g.node(id).name))?;
        let width = *cpu.shape.last().unwrap();
        let cpu: Vec<f32> = if gpu.data.len() < cpu.data.len() {
            cpu.data[cpu.data.len() - width..].to_vec()
        } else {
            cpu.data
        };
        let rounded: Vec<f32> = cpu.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
        let (num, den) = gpu
            .data
            .iter()
            .zip(&rounded)
            .fold((0f64, 0f64), |(n, d), (&a, &b)| {
                (n + (a as f64 - b as f64).powi(2), d + (b as f64).powi(2))
            });
        let rel_l2 = if den == 0.0 && num == 0.0 {
            0.0
        } else {
            (num / den).sqrt()
        };
        self.checks.push(Check {
            node: self.g.node(id).name.clone(),
            op: self.g.node(id).op.name(),
            phase: self.phase,
            rel_l2: if rel_l2.is_nan() {
                f64::INFINITY
            } else {
                rel_l2
            },
            values: gpu.data.len(),
        });
        Ok(())
    }
}

impl StepObserver for Oracle<'_> {
    fn step(&mut self, at: StepAt, mem: &DeviceMemory<'_>) -> Result<(), String> {
        if at.phase != self.phase {
            return Err(format!("observing {:?}, ran {:?}", self.phase, at.phase));
        }
        if !at.after {
            let starting = self.first.get(&at.index).cloned().unwrap_or_default();
            for id in starting {
                let args = self.g.operands(id);
                let mut given: Vec<Tensor> = Vec::with_capacity(args.len());
                for (slot, &a) in args.iter().enumerate() {
                    // The same value in two slots is drawn once.
                    let t = match args[..slot].iter().position(|&b| b == a) {
                        Some(i) => given[i].clone(),
                        None => self.operand(mem, id, slot, a)?,
                    };
                    given.push(t);
                }
                self.operands.insert(id, given);
            }
            return Ok(());
        }
        let ending = self.last.get(&at.index).cloned().unwrap_or_default();
        for id in ending {
            let gpu = self.result(mem, id, at.index)?;
            self.check(id, gpu)?;
        }
        Ok(())
    }
}

/// One layer's keys or values as the list lays them out: the batch-1 cache
/// (`[kv_heads, max_context, head_dim]` in the KV region) or the paged pool's blocks.
struct CacheView {
    region: Region,
    /// Where `bytes` starts in the region.
    base: u64,
    bytes: Vec<u8>,
    /// Element offset of (kv head 0, position 0) of the layer within a block or the cache.
    offset: usize,
    /// Positions per block (the cache: max_context, one "block").
    rows: usize,
    d: usize,
    /// Elements per block (paged).
    block_elems: usize,
}

impl CacheView {
    fn read(
        mem: &DeviceMemory<'_>,
        a: &Artifact,
        phase: Phase,
        layer: usize,
        cache: CacheKind,
    ) -> Result<CacheView, String> {
        let paged = !matches!(phase, Phase::Decode | Phase::Prefill);
        let (region, base, len, offset, rows, d, block_elems) = if paged {
            let e = a
                .paged
                .pool
                .iter()
                .find(|e| e.layer == layer && e.cache == cache)
                .ok_or("no pool entry")?;
            let size = mem.size(Region::Pool);
            let p = &a.paged;
            (
                Region::Pool,
                0,
                size as usize,
                e.offset as usize / 2,
                p.block_size,
                e.head_dim,
                p.block_bytes as usize / 2,
            )
        } else {
            let e = a
                .kv_caches
                .iter()
                .find(|e| e.layer == layer && e.cache == cache)
                .ok_or("no cache entry")?;
            (
                Region::Kv,
                e.offset,
                e.bytes as usize,
                0,
                e.shape[2],
                e.shape[3],
                0,
            )
        };
        let bytes = mem.read(region, base, len).map_err(|e| e.to_string())?;
        Ok(CacheView {
            region,
            base,
            bytes,
            offset,
            rows,
            d,
            block_elems,
        })
    }

    /// Byte offset of (kv head `h`, position `p`) of `seq`.
    fn at(&self, seq: &SeqRows, h: usize, p: usize) -> usize {
        let (block, row) = if seq.blocks.is_empty() {
            (0, p)
        } else {
            (seq.blocks[p / self.rows] as usize, p % self.rows)
        };
        (block * self.block_elems + self.offset + (h * self.rows + row) * self.d) * 2
    }

    fn get(&self, seq: &SeqRows, h: usize, p: usize, d: usize) -> Vec<bf16> {
        let at = self.at(seq, h, p);
        (0..d)
            .map(|i| {
                bf16::from_bits(u16::from_le_bytes([
                    self.bytes[at + 2 * i],
                    self.bytes[at + 2 * i + 1],
                ]))
            })
            .collect()
    }

    fn set(&mut self, seq: &SeqRows, h: usize, p: usize, row: &[bf16]) {
        let at = self.at(seq, h, p);
        for (i, v) in row.iter().enumerate() {
            self.bytes[at + 2 * i..at + 2 * i + 2].copy_from_slice(&v.to_bits().to_le_bytes());
        }
    }

    fn write(&self, mem: &DeviceMemory<'_>) -> Result<(), String> {
        mem.write(self.region, self.base, &self.bytes)
            .map_err(|e| e.to_string())
    }
}
