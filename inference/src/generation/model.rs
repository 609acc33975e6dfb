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

    /// cos and sin tables `[seq, head_dim]` for positions `start..start+seq`, computed in f32 the way
    /// transformers computes them (`inv_freq = 1 / theta^(2i/d)`, angles duplicated over both halves).
    fn rope_tables(&self, start: usize, seq: usize) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let d = self.config.head_dim;
        let half = d / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / self.config.rope_theta.powf((2 * i) as f32 / d as f32))
            .collect();
        let mut cos = Vec::with_capacity(seq * d);
        let mut sin = Vec::with_capacity(seq * d);
        for p in start..start + seq {
            let angles: Vec<f32> = inv_freq.iter().map(|f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        (
            Tensor::from_data(TensorData::new(cos, [seq, d]), &self.device),
            Tensor::from_data(TensorData::new(sin, [seq, d]), &self.device),
        )
    }

    /// `x * cos + rotate_half(x) * sin` for `x` of shape `[heads, seq, head_dim]`.
    fn rope(x: Tensor<B, 3>, cos: &Tensor<B, 3>, sin: &Tensor<B, 3>) -> Tensor<B, 3> {
        let [heads, seq, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().slice([0..heads, 0..seq, 0..half]);
        let x2 = x.clone().slice([0..heads, 0..seq, half..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 2);
        x.mul(cos.clone()).add(rotated.mul(sin.clone()))
    }

    /// Runs `ids` (the next tokens of the sequence in `cache`) through the model, appends their keys and
    /// values to the cache, and returns the logits of the last position. A prompt goes in one call;
    /// each generated token then costs one position.
    pub fn forward(
        &self,
        ids: &[u32],
        cache: &mut KvCache<B>,
    ) -> Result<Vec<f32>, GenerationError> {
        let cfg = &self.config;
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

        let (h, hd, groups) = (cfg.hidden, cfg.head_dim, cfg.groups());
        let (n_head, n_kv) = (cfg.n_head, cfg.n_kv_head);
        let ids_data: Vec<i64> = ids.iter().map(|i| i64::from(*i)).collect();
        let ids_tensor =
            Tensor::<B, 1, Int>::from_data(TensorData::new(ids_data, [seq]), &self.device);
        let mut x = self.embed.clone().select(0, ids_tensor);

        let (cos, sin) = self.rope_tables(past, seq);
        let (cos, sin) = (cos.unsqueeze_dim::<3>(0), sin.unsqueeze_dim::<3>(0));
        // Causal mask over the grouped query rows (row g*seq + i is query position past + i).
        let mask = (seq > 1).then(|| {
            let mut m = Vec::with_capacity(groups * seq * total);
            for _ in 0..groups {
                for i in 0..seq {
                    m.extend(
                        (0..total).map(|j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }),
                    );
                }
            }
            Tensor::<B, 2>::from_data(TensorData::new(m, [groups * seq, total]), &self.device)
                .unsqueeze_dim::<3>(0)
        });
        let scale = 1.0 / (hd as f32).sqrt();

        for (block, slot) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let normed = self.rms_norm(x.clone(), &block.attn_norm);
            let qkv = normed.matmul(block.wqkv.clone());
            let q = qkv.clone().slice([0..seq, 0..h]);
            let k = qkv.clone().slice([0..seq, h..h + n_kv * hd]);
            let v = qkv.slice([0..seq, h + n_kv * hd..h + 2 * n_kv * hd]);
            let q = q.reshape([seq, n_head, hd]).swap_dims(0, 1);
            let k = k.reshape([seq, n_kv, hd]).swap_dims(0, 1);
            let v = v.reshape([seq, n_kv, hd]).swap_dims(0, 1);
            let q = Self::rope(q, &cos, &sin);
            let k = Self::rope(k, &cos, &sin);

            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
                None => (k, v),
            };
            *slot = Some((k.clone(), v.clone()));

            // Grouped-query attention without copying K/V per query head: query heads sharing a KV
            // head (heads g*groups .. (g+1)*groups) are stacked as extra rows of one matrix product.
            let q = q.reshape([n_kv, groups * seq, hd]);
            let mut scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(scale);
            if let Some(mask) = &mask {
                scores = scores.add(mask.clone());
            }
            let probs = softmax(scores, 2);
            let attn = probs
                .matmul(v)
                .reshape([n_head, seq, hd])
                .swap_dims(0, 1)
                .reshape([seq, h]);
            x = x.add(attn.matmul(block.wo.clone()));

            let normed = self.rms_norm(x.clone(), &block.ffn_norm);
            let gate_up = normed.matmul(block.w_gate_up.clone());
            let gate = gate_up.clone().slice([0..seq, 0..cfg.ffn]);
            let up = gate_up.slice([0..seq, cfg.ffn..2 * cfg.ffn]);
            x = x.add(silu(gate).mul(up).matmul(block.w_down.clone()));
        }
        cache.len = total;

        let last = x.slice([seq - 1..seq, 0..h]);
        let logits = self.rms_norm(last, &self.norm).matmul(self.lm_head.clone());
        logits
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| GenerationError::Backend(format!("{e:?}")))
    }
}
