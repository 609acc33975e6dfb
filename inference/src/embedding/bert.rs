//! BERT encoder as in Hugging Face `BertModel` (post-norm, exact GELU), written on burn's tensor API.
//!
//! Field names follow the checkpoint's key names so that loading needs only two renames
//! (`LayerNorm` -> `layer_norm`, `attention.self` -> `attention.self_attn`, both Rust naming rules);
//! [`burn_store::PyTorchToBurnAdapter`] transposes the linear weights and maps `weight`/`bias` of the
//! layer norms to `gamma`/`beta`.

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor};

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
pub struct Encoder<B: Backend> {
    layer: Vec<Layer<B>>,
}

/// `BertModel` without the pooler (sentence-transformers pools the token states itself).
#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    embeddings: Embeddings<B>,
    encoder: Encoder<B>,
    heads: usize,
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
            encoder: Encoder { layer },
            heads: config.num_attention_heads,
        }
    }

    /// Token states `[batch, seq, hidden]` for token ids `[batch, seq]`.
    ///
    /// `padding` is `[batch, seq]`, true on padding positions; `None` when no row is padded (batch of
    /// one, or equal lengths), which skips the mask altogether. Every sequence is a single segment, so
    /// the token type is 0 throughout.
    pub fn forward(&self, ids: Tensor<B, 2, Int>, padding: Option<Tensor<B, 2, Bool>>) -> Tensor<B, 3> {
        let [batch, seq] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, seq]);
        let token_types = Tensor::<B, 2, Int>::zeros([batch, seq], &device);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(token_types);
        let mut x = e.layer_norm.forward(x);

        // Attention sees `true` as "masked out": hide padded keys from every query row.
        let mask = padding.map(|p| p.reshape([batch, 1, 1, seq]).expand([batch, 1, seq, seq]));
        for layer in &self.encoder.layer {
            x = layer.forward(x, mask.clone(), self.heads);
        }
        x
    }
}

impl<B: Backend> Layer<B> {
    fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 4, Bool>>, heads: usize) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / heads.max(1);
        let split = |t: Tensor<B, 3>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
        let a = &self.attention.self_attn;
        let q = split(a.query.forward(x.clone()));
        let k = split(a.key.forward(x.clone()));
        let v = split(a.value.forward(x.clone()));
        let ctx = attention(q, k, v, mask, None, AttentionModuleOptions::default())
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden]);
        let o = &self.attention.output;
        let x = o.layer_norm.forward(o.dense.forward(ctx) + x);
        let h = gelu(self.intermediate.dense.forward(x.clone()));
        let f = &self.output;
        f.layer_norm.forward(f.dense.forward(h) + x)
    }
}
