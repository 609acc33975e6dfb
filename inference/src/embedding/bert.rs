//! BERT encoder as in Hugging Face `BertModel` (post-norm, exact GELU), written on burn's tensor API.
//!
//! Two forms: [`Bert`], a burn `Module` shaped like the checkpoint, only for loading; and [`Encoder`],
//! built from it, which runs. The encoder works on *packed* tokens: the sequences of a batch are laid
//! end to end as one `[tokens, hidden]` matrix, so the projections, feed-forward layers and norms (nearly
//! all the work) spend nothing on padding. Only attention needs to know where each sequence starts: on
//! CPU it reads the packed rows in place, elsewhere they are gathered into a padded
//! `[batch, heads, seq, head]` layout with the padded keys masked (see [`super::kernels`]).
//!
//! Field names of [`Bert`] follow the checkpoint's key names so that loading needs only two renames
//! (`LayerNorm` -> `layer_norm`, `attention.self` -> `attention.self_attn`, both Rust naming rules);
//! [`burn_store::PyTorchToBurnAdapter`] transposes the linear weights and maps `weight`/`bias` of the
//! layer norms to `gamma`/`beta`.

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::kernels::EncoderOps;

/// The hyper-parameters read from `config.json` (only those the forward pass needs).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BertConfig {
    /// Vocabulary size (30522).
    pub vocab_size: usize,
    /// Width of every hidden state (384).
    pub hidden_size: usize,
    /// Encoder layers (6).
    pub num_hidden_layers: usize,
    /// Attention heads per layer (12).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer (1536).
    pub intermediate_size: usize,
    /// Longest position the position table covers (512).
    pub max_position_embeddings: usize,
    /// Token type (segment) table size (2).
    pub type_vocab_size: usize,
    /// Layer-norm epsilon (1e-12).
    pub layer_norm_eps: f64,
    /// Activation; only exact `gelu` is implemented.
    pub hidden_act: String,
}

/// Token, position and segment embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct Embeddings<B: Backend> {
    word_embeddings: Embedding<B>,
    position_embeddings: Embedding<B>,
    token_type_embeddings: Embedding<B>,
    layer_norm: LayerNorm<B>,
}

/// Query, key and value projections of one layer.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
}

/// Projection after attention, residual, layer norm.
#[derive(Module, Debug)]
pub struct DenseNorm<B: Backend> {
    dense: Linear<B>,
    layer_norm: LayerNorm<B>,
}

/// The attention half of a layer.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    self_attn: SelfAttention<B>,
    output: DenseNorm<B>,
}

/// The first feed-forward projection.
#[derive(Module, Debug)]
pub struct Intermediate<B: Backend> {
    dense: Linear<B>,
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct Layer<B: Backend> {
    attention: Attention<B>,
    intermediate: Intermediate<B>,
    output: DenseNorm<B>,
}

/// The stack of encoder layers.
#[derive(Module, Debug)]
pub struct Layers<B: Backend> {
    layer: Vec<Layer<B>>,
}

/// `BertModel` without the pooler (sentence-transformers pools the token states itself), shaped like the
/// checkpoint so that its tensors load by name.
#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    embeddings: Embeddings<B>,
    encoder: Layers<B>,
}

fn linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    // Zeros: every parameter is overwritten by the checkpoint; random init would only cost time.
    LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

fn norm<B: Backend>(config: &BertConfig, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(config.hidden_size)
        .with_epsilon(config.layer_norm_eps)
        .init(device)
}

fn embedding<B: Backend>(n: usize, d: usize, device: &B::Device) -> Embedding<B> {
    EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

impl<B: Backend> Bert<B> {
    /// An all-zero model with the checkpoint's shapes, ready to have the weights applied.
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        let h = config.hidden_size;
        let layer = (0..config.num_hidden_layers)
            .map(|_| Layer {
                attention: Attention {
                    self_attn: SelfAttention {
                        query: linear(h, h, device),
                        key: linear(h, h, device),
                        value: linear(h, h, device),
                    },
                    output: DenseNorm {
                        dense: linear(h, h, device),
                        layer_norm: norm(config, device),
                    },
                },
                intermediate: Intermediate {
                    dense: linear(h, config.intermediate_size, device),
                },
                output: DenseNorm {
                    dense: linear(config.intermediate_size, h, device),
                    layer_norm: norm(config, device),
                },
            })
            .collect();
        Bert {
            embeddings: Embeddings {
                word_embeddings: embedding(config.vocab_size, h, device),
                position_embeddings: embedding(config.max_position_embeddings, h, device),
                token_type_embeddings: embedding(config.type_vocab_size, h, device),
                layer_norm: norm(config, device),
            },
            encoder: Layers { layer },
        }
    }

    /// The runnable form, with the segment-0 embedding folded into the word table (every input here is
    /// a single segment).
    pub fn into_encoder(self, heads: usize) -> Encoder<B>
    where
        B: EncoderOps,
    {
        let dense = |l: &Linear<B>| Dense::from(l);
        let e = self.embeddings;
        let type0 = e.token_type_embeddings.weight.val().narrow(0, 0, 1);
        let words = e.word_embeddings.weight.val() + type0;
        let layers = self
            .encoder
            .layer
            .into_iter()
            .map(|l| {
                let a = l.attention.self_attn;
                EncoderLayer {
                    query: dense(&a.query),
                    key: dense(&a.key),
                    value: dense(&a.value),
                    attn_out: dense(&l.attention.output.dense),
                    attn_norm: l.attention.output.layer_norm,
                    up: dense(&l.intermediate.dense),
                    down: dense(&l.output.dense),
                    out_norm: l.output.layer_norm,
                }
            })
            .collect();
        Encoder {
            words,
            positions: e.position_embeddings.weight.val(),
            norm: e.layer_norm,
            layers,
            heads: heads.max(1),
        }
    }
}

/// A linear map `x @ weight + bias` with burn's `[in, out]` weight layout, whose bias the caller adds
/// (through [`EncoderOps`], fused with what follows the product).
///
/// A lone sentence (ten-odd rows) is too small for burn's matmul to use more than one thread (its
/// threshold is 192^3 multiply-adds), and it stays that way on purpose: splitting each product's
/// output columns across two rayon tasks (what this type did before) measured 135-155 embeddings/s at
/// batch 1 against 215 for one thread per sentence on this shared 2-core machine (load 4-4.5): with the
/// other core busy, each of a sentence's 36 fork-joins waited for a thread to be scheduled. Batches use
/// the cores through parts run side by side instead (see `SentenceEmbedder::run`).
#[derive(Debug, Clone)]
struct Dense<B: Backend> {
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
}

impl<B: Backend> From<&Linear<B>> for Dense<B> {
    fn from(l: &Linear<B>) -> Self {
        let weight = l.weight.val();
        let [_, out] = weight.dims();
        let bias = match &l.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([out], &weight.device()),
        };
        Dense { weight, bias }
    }
}

impl<B: Backend> Dense<B> {
    /// `x @ weight`, without the bias.
    fn product(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.weight.clone())
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer<B: Backend> {
    query: Dense<B>,
    key: Dense<B>,
    value: Dense<B>,
    attn_out: Dense<B>,
    attn_norm: LayerNorm<B>,
    up: Dense<B>,
    down: Dense<B>,
    out_norm: LayerNorm<B>,
}

/// The runnable BERT encoder (see the module docs).
#[derive(Debug, Clone)]
pub struct Encoder<B: EncoderOps> {
    /// Word embeddings with the segment-0 embedding already added.
    words: Tensor<B, 2>,
    positions: Tensor<B, 2>,
    norm: LayerNorm<B>,
    layers: Vec<EncoderLayer<B>>,
    heads: usize,
}

/// Where each sequence's tokens sit in the packed matrix, and how to reach the padded layout.
#[derive(Debug, Clone)]
pub struct Packing<B: Backend> {
    /// Tokens of each sequence, in packed order.
    pub(super) lengths: Vec<usize>,
    /// The forward pass has rayon's pool to itself (see [`Packing::alone`]).
    pub(super) alone: bool,
    pub(super) batch: usize,
    pub(super) seq: usize,
    /// `[batch * seq]`: the packed row each padded slot reads (padding slots read row 0, harmlessly:
    /// they are masked as keys and dropped as queries).
    pub(super) to_padded: Option<Tensor<B, 1, Int>>,
    /// `[tokens]`: the padded slot of each packed row.
    pub(super) to_packed: Option<Tensor<B, 1, Int>>,
    /// `[batch, 1, seq, seq]`, true on padded keys.
    pub(super) mask: Option<Tensor<B, 4, Bool>>,
}

impl<B: Backend> Packing<B> {
    /// The packing of sequences of these lengths (each at least 1). With equal lengths (a batch of one,
    /// say) packed and padded layouts coincide and no gather or mask is needed.
    pub fn new(lengths: &[usize], device: &B::Device) -> Self {
        let batch = lengths.len();
        let seq = lengths.iter().copied().max().unwrap_or(0);
        if lengths.iter().all(|&l| l == seq) {
            return Packing {
                lengths: lengths.to_vec(),
                alone: false,
                batch,
                seq,
                to_padded: None,
                to_packed: None,
                mask: None,
            };
        }
        let tokens: usize = lengths.iter().sum();
        let mut to_padded = Vec::with_capacity(batch * seq);
        let mut to_packed = Vec::with_capacity(tokens);
        let mut padding = Vec::with_capacity(batch * seq);
        let mut offset = 0usize;
        for (b, &len) in lengths.iter().enumerate() {
            for s in 0..seq {
                let real = s < len;
                to_padded.push(if real { index(offset + s) } else { 0 });
                padding.push(!real);
                if real {
                    to_packed.push(index(b * seq + s));
                }
            }
            offset += len;
        }
        let ints = |v: Vec<i32>| {
            let n = v.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device)
        };
        let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(padding, [batch, seq]), device)
            .reshape([batch, 1, 1, seq])
            .expand([batch, 1, seq, seq]);
        Packing {
            lengths: lengths.to_vec(),
            alone: false,
            batch,
            seq,
            to_padded: Some(ints(to_padded)),
            to_packed: Some(ints(to_packed)),
            mask: Some(mask),
        }
    }
}

impl<B: Backend> Packing<B> {
    /// Marks a forward pass that has rayon's pool to itself (one batch, not one of several parts run
    /// side by side), so that attention over long sequences may spread its rows across the pool.
    pub fn alone(mut self, alone: bool) -> Self {
        self.alone = alone;
        self
    }
}

fn index(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

impl<B: EncoderOps> Encoder<B> {
    /// Token states `[tokens, hidden]` for packed token ids and positions (`[tokens]` each).
    pub fn forward(
        &self,
        ids: Tensor<B, 1, Int>,
        positions: Tensor<B, 1, Int>,
        packing: &Packing<B>,
    ) -> Tensor<B, 2> {
        let x = self.words.clone().select(0, ids) + self.positions.clone().select(0, positions);
        let mut x = self.norm.forward(x);
        for layer in &self.layers {
            x = self.layer(layer, x, packing);
        }
        x
    }

    fn layer(&self, l: &EncoderLayer<B>, x: Tensor<B, 2>, p: &Packing<B>) -> Tensor<B, 2> {
        // Three projections rather than one fused one: each output is its own contiguous buffer, which
        // the CPU attention reads in place (a slice of a fused output would be a strided view).
        let qkv = |d: &Dense<B>| B::add_bias(d.product(x.clone()), &d.bias);
        let ctx = B::packed_attention(qkv(&l.query), qkv(&l.key), qkv(&l.value), p, self.heads);
        let o = &l.attn_out;
        let x = B::bias_residual_norm(o.product(ctx), &o.bias, x, &l.attn_norm);
        let h = B::bias_gelu(l.up.product(x.clone()), &l.up.bias);
        let d = &l.down;
        B::bias_residual_norm(d.product(h), &d.bias, x, &l.out_norm)
    }
}
