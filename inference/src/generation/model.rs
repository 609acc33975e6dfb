//! The Llama architecture in burn, with a KV cache, loaded from GGUF weights.
//!
//! It follows Hugging Face transformers' `LlamaForCausalLM` step for step (RMSNorm in f32, rotate-half
//! RoPE, grouped-query attention, SiLU-gated MLP, tied embeddings when the file has no `output.weight`),
//! because the greedy output is checked token for token against transformers loading the same file.
//!
//! Generic over the burn backend: tests run on `burn::backend::Flex` (CPU); the CUDA backend works the
//! same way.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::error::GenerationError;
use super::gguf::Gguf;

/// Hyper-parameters of a Llama model, read from GGUF metadata (`llama.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub n_layers: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Width of the MLP's inner layer.
    pub ffn: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (fewer than query heads with grouped-query attention).
    pub n_kv_head: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab: usize,
    /// Longest sequence the model was trained for; generation refuses to go past it.
    pub context_length: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
}

fn bad(msg: impl Into<String>) -> GenerationError {
    GenerationError::BadConfig(msg.into())
}

impl LlamaConfig {
    /// Reads the configuration and checks that it is self-consistent.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, GenerationError> {
        let arch = gguf.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(GenerationError::UnsupportedArchitecture(arch.to_string()));
        }
        let n_head = gguf.get_usize("llama.attention.head_count")?;
        let n_kv_head = match gguf.get_usize("llama.attention.head_count_kv") {
            Err(super::gguf::GgufError::MissingKey(_)) => n_head,
            other => other?,
        };
        let hidden = gguf.get_usize("llama.embedding_length")?;
        let embd = gguf
            .tensor("token_embd.weight")
            .ok_or_else(|| super::gguf::GgufError::MissingTensor("token_embd.weight".into()))?;
        let vocab = match gguf.get_usize("llama.vocab_size") {
            Ok(v) => v,
            Err(_) => embd
                .dims
                .get(1)
                .and_then(|d| usize::try_from(*d).ok())
                .ok_or_else(|| bad("no vocabulary size"))?,
        };
        let cfg = Self {
            n_layers: gguf.get_usize("llama.block_count")?,
            hidden,
            ffn: gguf.get_usize("llama.feed_forward_length")?,
            n_head,
            n_kv_head,
            head_dim: hidden.checked_div(n_head).unwrap_or(0),
            vocab,
            context_length: gguf.get_usize("llama.context_length").unwrap_or(2048),
            rope_theta: gguf.get_f32("llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: gguf
                .get_f32("llama.attention.layer_norm_rms_epsilon")
                .unwrap_or(1e-5),
        };
        if cfg.n_layers == 0 || cfg.hidden == 0 || cfg.ffn == 0 || cfg.vocab == 0 {
            return Err(bad("a dimension is zero"));
        }
        if n_head == 0 || n_kv_head == 0 || hidden % n_head != 0 || n_head % n_kv_head != 0 {
            return Err(bad(format!(
                "{n_head} heads, {n_kv_head} kv heads and width {hidden} do not divide"
            )));
        }
        if !cfg.head_dim.is_multiple_of(2) {
            return Err(bad("odd head width"));
        }
        if let Ok(rope_dims) = gguf.get_usize("llama.rope.dimension_count")
            && rope_dims != cfg.head_dim
        {
            return Err(bad("partial rotary embeddings are not supported"));
        }
        let rope_ok = cfg.rope_theta.is_finite() && cfg.rope_theta > 0.0;
        let eps_ok = cfg.rms_eps.is_finite() && cfg.rms_eps >= 0.0;
        if !rope_ok || !eps_ok {
            return Err(bad("rope base or norm epsilon out of range"));
        }
        Ok(cfg)
    }

    fn groups(&self) -> usize {
        self.n_head / self.n_kv_head
    }
}

/// One transformer block's weights. Matrices are stored `[in, out]` so that `x @ w` applies them;
/// Q, K and V are fused into one matrix and so are the gate and up projections, to halve the number of
/// (small, overhead-bound) matrix products per generated token.
#[derive(Debug)]
struct Block<B: Backend> {
    attn_norm: Tensor<B, 2>,
    wqkv: Tensor<B, 2>,
    wo: Tensor<B, 2>,
    ffn_norm: Tensor<B, 2>,
    w_gate_up: Tensor<B, 2>,
    w_down: Tensor<B, 2>,
}

/// The keys and values of every position seen so far, per layer: `[kv_heads, positions, head_dim]`.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 3>, Tensor<B, 3>)>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A Llama causal language model on backend `B`.
#[derive(Debug)]
pub struct Llama<B: Backend> {
    config: LlamaConfig,
    embed: Tensor<B, 2>,
    /// `[hidden, vocab]`: a transposed copy of the embedding when weights are tied.
    lm_head: Tensor<B, 2>,
    norm: Tensor<B, 2>,
    blocks: Vec<Block<B>>,
    device: B::Device,
}

/// Dequantises a tensor and checks its shape (`dims` innermost first, as GGUF stores it).
fn load(gguf: &Gguf, name: &str, dims: &[usize]) -> Result<Vec<f32>, GenerationError> {
    let info = gguf
        .tensor(name)
        .ok_or_else(|| super::gguf::GgufError::MissingTensor(name.to_string()))?;
    let expected: Vec<u64> = dims.iter().map(|d| *d as u64).collect();
    if info.dims != expected {
        return Err(GenerationError::TensorShape {
            name: name.to_string(),
            expected,
            found: info.dims.clone(),
        });
    }
    Ok(gguf.dequantize(name)?)
}

/// `[rows, cols]` row-major to `[cols, rows]` row-major.
fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    for (r, row) in src.chunks_exact(cols).take(rows).enumerate() {
        for (c, v) in row.iter().enumerate() {
            if let Some(slot) = out.get_mut(c * rows + r) {
                *slot = *v;
            }
        }
    }
    out
}

/// Undoes the row permutation llama.cpp's converter applies to Q and K weights (it interleaves the two
/// halves of each head so that ggml's RoPE can rotate adjacent pairs). Transformers undoes it when it
/// loads a GGUF and then rotates halves (`rotate_half`); doing the same here gives the same numbers.
/// Within a head of width `d`, GGUF row `2i + j` holds original row `j * d/2 + i`.
fn unpermute_rows(w: &[f32], n_heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for head in 0..n_heads {
        for h in 0..head_dim {
            let src_row = head * head_dim + 2 * (h % half) + h / half;
            let dst_row = head * head_dim + h;
            let src = w.get(src_row * cols..(src_row + 1) * cols);
            let dst = out.get_mut(dst_row * cols..(dst_row + 1) * cols);
            if let (Some(src), Some(dst)) = (src, dst) {
                dst.copy_from_slice(src);
            }
        }
    }
    out
}

impl<B: Backend> Llama<B> {
    /// Loads the weights from a GGUF file onto `device`, dequantised to f32.
    pub fn from_gguf(gguf: &Gguf, device: &B::Device) -> Result<Self, GenerationError> {
        let cfg = LlamaConfig::from_gguf(gguf)?;
        let (h, hd) = (cfg.hidden, cfg.head_dim);
        let kv = cfg.n_kv_head * hd;
        let tensor2 = |data: Vec<f32>, shape: [usize; 2]| -> Tensor<B, 2> {
            Tensor::from_data(TensorData::new(data, shape), device)
        };

        let embed_data = load(gguf, "token_embd.weight", &[h, cfg.vocab])?;
        let lm_head = if gguf.tensor("output.weight").is_some() {
            let w = load(gguf, "output.weight", &[h, cfg.vocab])?;
            tensor2(transpose(&w, cfg.vocab, h), [h, cfg.vocab])
        } else {
            tensor2(transpose(&embed_data, cfg.vocab, h), [h, cfg.vocab])
        };
        let embed = tensor2(embed_data, [cfg.vocab, h]);
        let norm = tensor2(load(gguf, "output_norm.weight", &[h])?, [1, h]);

        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let q = unpermute_rows(&load(gguf, &name("attn_q"), &[h, h])?, cfg.n_head, hd, h);
            let k = unpermute_rows(
                &load(gguf, &name("attn_k"), &[h, kv])?,
                cfg.n_kv_head,
                hd,
                h,
            );
            let v = load(gguf, &name("attn_v"), &[h, kv])?;
            let qkv_rows = h + 2 * kv;
            let qkv: Vec<f32> = q.into_iter().chain(k).chain(v).collect();
            let gate = load(gguf, &name("ffn_gate"), &[h, cfg.ffn])?;
            let up = load(gguf, &name("ffn_up"), &[h, cfg.ffn])?;
            let gate_up: Vec<f32> = gate.into_iter().chain(up).collect();
            let wo = load(gguf, &name("attn_output"), &[h, h])?;
            let down = load(gguf, &name("ffn_down"), &[cfg.ffn, h])?;
            blocks.push(Block {
                attn_norm: tensor2(load(gguf, &name("attn_norm"), &[h])?, [1, h]),
                wqkv: tensor2(transpose(&qkv, qkv_rows, h), [h, qkv_rows]),
                wo: tensor2(transpose(&wo, h, h), [h, h]),
                ffn_norm: tensor2(load(gguf, &name("ffn_norm"), &[h])?, [1, h]),
                w_gate_up: tensor2(transpose(&gate_up, 2 * cfg.ffn, h), [h, 2 * cfg.ffn]),
                w_down: tensor2(transpose(&down, h, cfg.ffn), [cfg.ffn, h]),
            });
        }
        Ok(Self {
            config: cfg,
            embed,
            lm_head,
            norm,
            blocks,
            device: device.clone(),
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// An empty cache for a new sequence.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache {
            layers: vec![None; self.config.n_layers],
            len: 0,
        }
    }

    /// `x * rsqrt(mean(x^2) + eps) * weight`, over the last dimension, as transformers' `LlamaRMSNorm`.
    fn rms_norm(&self, x: Tensor<B, 2>, weight: &Tensor<B, 2>) -> Tensor<B, 2> {
        let variance = x.clone().mul(x.clone()).mean_dim(1);
        let inv = variance.add_scalar(self.config.rms_eps).sqrt().recip();
        weight.clone().mul(x.mul(inv))
    }

    /// cos and sin tables `[positions.len(), 1, head_dim]` for the given positions, computed in f32 the
    /// way transformers computes them (`inv_freq = 1 / theta^(2i/d)`, angles duplicated over both
    /// halves). The middle axis broadcasts over heads.
    fn rope_tables(&self, positions: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let d = self.config.head_dim;
        let half = d / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / self.config.rope_theta.powf((2 * i) as f32 / d as f32))
            .collect();
        let rows = positions.len();
        let mut cos = Vec::with_capacity(rows * d);
        let mut sin = Vec::with_capacity(rows * d);
        for p in positions {
            let angles: Vec<f32> = inv_freq.iter().map(|f| *p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        (
            Tensor::from_data(TensorData::new(cos, [rows, 1, d]), &self.device),
            Tensor::from_data(TensorData::new(sin, [rows, 1, d]), &self.device),
        )
    }

    /// `x * cos + rotate_half(x) * sin` for `x` of shape `[rows, heads, head_dim]` (element-wise, so
    /// each row's result depends on that row alone).
    fn rope(x: Tensor<B, 3>, cos: &Tensor<B, 3>, sin: &Tensor<B, 3>) -> Tensor<B, 3> {
        let [rows, heads, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().slice([0..rows, 0..heads, 0..half]);
        let x2 = x.clone().slice([0..rows, 0..heads, half..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 2);
        x.mul(cos.clone()).add(rotated.mul(sin.clone()))
    }

    /// Runs `ids` (the next tokens of the sequence in `cache`) through the model, appends their keys and
    /// values to the cache, and returns the logits of the last position. A prompt goes in one call;
    /// each generated token then costs one position. The same computation as
    /// [`Llama::forward_batch`] with one sequence.
    pub fn forward(
        &self,
        ids: &[u32],
        cache: &mut KvCache<B>,
    ) -> Result<Vec<f32>, GenerationError> {
        let mut logits = self.forward_batch(&mut [(ids, cache)])?;
        logits
            .pop()
            .ok_or_else(|| GenerationError::Backend("no logits for the sequence".into()))
    }

    /// Runs several sequences one step further together: each entry is the next tokens of one sequence
    /// (a whole prompt, or the one token just generated) with that sequence's own cache. Returns the
    /// logits of each sequence's last position, in order.
    ///
    /// The rows of all sequences are stacked for every weight product (embedding, QKV, output, MLP, LM
    /// head), so the weights are read once per step however many sequences run: that is what makes
    /// batching pay on a memory-bound CPU. Attention runs per sequence on its own cache, with its own
    /// positions (RoPE) and causal mask, so no padding or cross-sequence mask is needed and no
    /// sequence sees another's keys.
    ///
    /// Row independence, and its one exception. Every operation here is per row (norms, RoPE,
    /// activations), per sequence with the same shapes as alone (attention), or a weight product; gemm
    /// sums a product's inner dimension in one fixed blocked order for any number of rows, so a
    /// sequence's logits are bit for bit the same in a batch of 2, 5 or 8 whatever its companions.
    /// But a product with a single row goes to gemm's matrix-vector kernel, which sums in another
    /// order: a sequence that runs alone (one row: a decode step with no company, or the last position
    /// of a prompt for the LM head) can differ from the same sequence in a batch in the last bits of
    /// its logits (measured on SmolLM2: at most 7e-5 on logits of magnitude ~10). Greedy tokens are
    /// the same on every reference prompt, alone and batched (`tests/generation_batch.rs` checks them
    /// against transformers, which differs from either by more); a token could only change at a
    /// near-exact tie between the two best logits, or when a seeded draw lands within that margin of
    /// a boundary. Forcing the matrix kernel for single rows (doubling the row) would make the two
    /// bit-identical, but it measured 30% slower for a lone sequence (17.8 against 12.5 tokens/s), so
    /// the lone case keeps the fast kernel.
    ///
    /// Every entry is checked before anything runs; a bad entry fails the call and leaves every cache
    /// as it was.
    pub fn forward_batch(
        &self,
        batch: &mut [(&[u32], &mut KvCache<B>)],
    ) -> Result<Vec<Vec<f32>>, GenerationError> {
        let cfg = &self.config;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut positions = Vec::new();
        let mut spans = Vec::with_capacity(batch.len());
        for (ids, cache) in batch.iter() {
            let seq = ids.len();
            if seq == 0 {
                return Err(GenerationError::EmptyPrompt);
            }
            if let Some(bad_id) = ids.iter().find(|id| **id as usize >= cfg.vocab) {
                return Err(GenerationError::TokenOutOfRange {
                    id: *bad_id,
                    vocab: cfg.vocab,
                });
            }
            let past = cache.len;
            let total = past + seq;
            if total > cfg.context_length {
                return Err(GenerationError::ContextFull {
                    needed: total,
                    max: cfg.context_length,
                });
            }
            if cache.layers.len() != cfg.n_layers {
                return Err(bad(
                    "the KV cache belongs to a model with another layer count",
                ));
            }
            spans.push((positions.len(), seq, past));
            positions.extend(past..total);
        }
        let rows = positions.len();

        let (h, hd, groups) = (cfg.hidden, cfg.head_dim, cfg.groups());
        let (n_head, n_kv) = (cfg.n_head, cfg.n_kv_head);
        let ids_data: Vec<i64> = batch
            .iter()
            .flat_map(|(ids, _)| ids.iter().map(|i| i64::from(*i)))
            .collect();
        let ids_tensor =
            Tensor::<B, 1, Int>::from_data(TensorData::new(ids_data, [rows]), &self.device);
        let mut x = self.embed.clone().select(0, ids_tensor);

        let (cos, sin) = self.rope_tables(&positions);
        // Causal mask of each sequence over its grouped query rows (row g*seq + i is query position
        // past + i); a single new position sees everything and needs none.
        let masks: Vec<Option<Tensor<B, 3>>> = spans
            .iter()
            .map(|&(_, seq, past)| {
                let total = past + seq;
                (seq > 1).then(|| {
                    let mut m = Vec::with_capacity(groups * seq * total);
                    for _ in 0..groups {
                        for i in 0..seq {
                            m.extend(
                                (0..total)
                                    .map(|j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }),
                            );
                        }
                    }
                    Tensor::<B, 2>::from_data(
                        TensorData::new(m, [groups * seq, total]),
                        &self.device,
                    )
                    .unsqueeze_dim::<3>(0)
                })
            })
            .collect();
        let scale = 1.0 / (hd as f32).sqrt();

        for (layer, block) in self.blocks.iter().enumerate() {
            let normed = self.rms_norm(x.clone(), &block.attn_norm);
            let qkv = normed.matmul(block.wqkv.clone());
            let q = qkv.clone().slice([0..rows, 0..h]);
            let k = qkv.clone().slice([0..rows, h..h + n_kv * hd]);
            let v = qkv.slice([0..rows, h + n_kv * hd..h + 2 * n_kv * hd]);
            let q = Self::rope(q.reshape([rows, n_head, hd]), &cos, &sin);
            let k = Self::rope(k.reshape([rows, n_kv, hd]), &cos, &sin);
            let v = v.reshape([rows, n_kv, hd]);

            let mut outs = Vec::with_capacity(spans.len());
            for ((&(start, seq, _), (_, cache)), mask) in
                spans.iter().zip(batch.iter_mut()).zip(&masks)
            {
                let own = start..start + seq;
                let q = q
                    .clone()
                    .slice([own.clone(), 0..n_head, 0..hd])
                    .swap_dims(0, 1);
                let k = k
                    .clone()
                    .slice([own.clone(), 0..n_kv, 0..hd])
                    .swap_dims(0, 1);
                let v = v.clone().slice([own, 0..n_kv, 0..hd]).swap_dims(0, 1);
                let slot = cache
                    .layers
                    .get_mut(layer)
                    .ok_or_else(|| bad("the KV cache has too few layers"))?;
                let (k, v) = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
                    None => (k, v),
                };
                *slot = Some((k.clone(), v.clone()));

                // Grouped-query attention without copying K/V per query head: query heads sharing a
                // KV head (heads g*groups .. (g+1)*groups) are stacked as extra rows of one product.
                let q = q.reshape([n_kv, groups * seq, hd]);
                let mut scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(scale);
                if let Some(mask) = mask {
                    scores = scores.add(mask.clone());
                }
                let probs = softmax(scores, 2);
                outs.push(
                    probs
                        .matmul(v)
                        .reshape([n_head, seq, hd])
                        .swap_dims(0, 1)
                        .reshape([seq, h]),
                );
            }
            let attn = Tensor::cat(outs, 0);
            x = x.add(attn.matmul(block.wo.clone()));

            let normed = self.rms_norm(x.clone(), &block.ffn_norm);
            let gate_up = normed.matmul(block.w_gate_up.clone());
            let gate = gate_up.clone().slice([0..rows, 0..cfg.ffn]);
            let up = gate_up.slice([0..rows, cfg.ffn..2 * cfg.ffn]);
            x = x.add(silu(gate).mul(up).matmul(block.w_down.clone()));
        }
        for ((_, cache), &(_, seq, past)) in batch.iter_mut().zip(&spans) {
            cache.len = past + seq;
        }

        let last: Vec<i64> = spans
            .iter()
            .map(|&(start, seq, _)| (start + seq - 1) as i64)
            .collect();
        let count = last.len();
        let last = Tensor::<B, 1, Int>::from_data(TensorData::new(last, [count]), &self.device);
        let logits = self
            .rms_norm(x.select(0, last), &self.norm)
            .matmul(self.lm_head.clone());
        let values = logits
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| GenerationError::Backend(format!("{e:?}")))?;
        Ok(values
            .chunks_exact(cfg.vocab)
            .map(<[f32]>::to_vec)
            .collect())
    }
}
