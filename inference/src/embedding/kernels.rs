//! The encoder's steps other than the matrix products, with fused CPU kernels.
//!
//! [`EncoderOps`] names the steps a BERT layer runs between its six matrix products: adding a bias,
//! bias + exact GELU, bias + residual + layer norm, and multi-head self-attention over packed rows. Its
//! default methods are plain burn tensor code and serve every backend (CUDA included). The CPU backend
//! ([`Flex`]) overrides them with kernels that work on the raw `f32` buffers, because at batch 1 (ten-odd
//! tokens) the matrix products are small and what surrounds them dominated (`perf`, one thread): each burn
//! op allocates a fresh buffer, splitting `[tokens, hidden]` into `[batch, heads, seq, head]` and merging
//! it back went through flex's generic strided iterator three times a layer, and the exact GELU called
//! libm's scalar `erff` once per element. Here the bias is added in place into the product's own buffer
//! (it is never shared), GELU uses a branch-free rational `erf` the compiler vectorises, and attention
//! reads each head straight out of the packed `[tokens, hidden]` rows (head `h` is columns
//! `h * head .. (h + 1) * head`), so no permuted copy, gather, padding or mask is ever built.

use burn::nn::LayerNorm;
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use super::bert::Packing;

/// The steps of a layer besides its matrix products; defaults are portable burn code.
pub trait EncoderOps: Backend {
    /// `x + bias`, the bias broadcast over rows.
    fn add_bias(x: Tensor<Self, 2>, bias: &Tensor<Self, 1>) -> Tensor<Self, 2> {
        portable::add_bias(x, bias)
    }

    /// `gelu(x + bias)` with the exact (erf) GELU.
    fn bias_gelu(x: Tensor<Self, 2>, bias: &Tensor<Self, 1>) -> Tensor<Self, 2> {
        gelu(portable::add_bias(x, bias))
    }

    /// `norm(x + bias + residual)`.
    fn bias_residual_norm(
        x: Tensor<Self, 2>,
        bias: &Tensor<Self, 1>,
        residual: Tensor<Self, 2>,
        norm: &LayerNorm<Self>,
    ) -> Tensor<Self, 2> {
        norm.forward(portable::add_bias(x, bias) + residual)
    }

    /// Multi-head self-attention (scaled dot product, no causal mask) of packed `[tokens, hidden]`
    /// queries, keys and values; each sequence attends only to its own tokens.
    fn packed_attention(
        q: Tensor<Self, 2>,
        k: Tensor<Self, 2>,
        v: Tensor<Self, 2>,
        packing: &Packing<Self>,
        heads: usize,
    ) -> Tensor<Self, 2> {
        portable::packed_attention(q, k, v, packing, heads)
    }
}

#[cfg(feature = "cuda")]
impl EncoderOps for crate::backend::CudaBackend {}

/// The burn-only forms, for backends without kernels of their own and for inputs the CPU kernels do
/// not take (anything but `f32`).
mod portable {
    use super::*;

    pub(super) fn add_bias<B: Backend>(x: Tensor<B, 2>, bias: &Tensor<B, 1>) -> Tensor<B, 2> {
        x + bias.clone().unsqueeze_dim(0)
    }

    /// Gathers the packed rows into a padded `[batch, heads, seq, head]` layout with the padded keys
    /// masked, runs burn's attention, and gathers the result back.
    pub(super) fn packed_attention<B: Backend>(
        q: Tensor<B, 2>,
        k: Tensor<B, 2>,
        v: Tensor<B, 2>,
        p: &Packing<B>,
        heads: usize,
    ) -> Tensor<B, 2> {
        let [_, hidden] = q.dims();
        let head_dim = hidden / heads;
        let split = |t: Tensor<B, 2>| {
            let t = match &p.to_padded {
                Some(idx) => t.select(0, idx.clone()),
                None => t,
            };
            t.reshape([p.batch, p.seq, heads, head_dim]).swap_dims(1, 2)
        };
        let ctx = attention(
            split(q),
            split(k),
            split(v),
            p.mask.clone(),
            None,
            AttentionModuleOptions::default(),
        )
        .swap_dims(1, 2)
        .reshape([p.batch * p.seq, hidden]);
        match &p.to_packed {
            Some(idx) => ctx.select(0, idx.clone()),
            None => ctx,
        }
    }
}

impl EncoderOps for Flex {
    fn add_bias(x: Tensor<Self, 2>, bias: &Tensor<Self, 1>) -> Tensor<Self, 2> {
        if !all_f32(&[&x], bias) {
            return portable::add_bias(x, bias);
        }
        let bias = into_flex(bias.clone()).to_contiguous();
        let bias: &[f32] = bias.storage();
        let mut x = owned(x);
        for row in x.storage_mut::<f32>().chunks_exact_mut(bias.len()) {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
        from_flex(x)
    }

    fn bias_gelu(x: Tensor<Self, 2>, bias: &Tensor<Self, 1>) -> Tensor<Self, 2> {
        if !all_f32(&[&x], bias) {
            return gelu(portable::add_bias(x, bias));
        }
        let bias = into_flex(bias.clone()).to_contiguous();
        let bias: &[f32] = bias.storage();
        let mut x = owned(x);
        for row in x.storage_mut::<f32>().chunks_exact_mut(bias.len()) {
            row.iter_mut()
                .zip(bias)
                .for_each(|(v, b)| *v = gelu_erf(*v + b));
        }
        from_flex(x)
    }

    fn bias_residual_norm(
        x: Tensor<Self, 2>,
        bias: &Tensor<Self, 1>,
        residual: Tensor<Self, 2>,
        norm: &LayerNorm<Self>,
    ) -> Tensor<Self, 2> {
        if !all_f32(&[&x, &residual], bias) {
            return norm.forward(portable::add_bias(x, bias) + residual);
        }
        let bias = into_flex(bias.clone()).to_contiguous();
        let bias: &[f32] = bias.storage();
        let residual = owned(residual);
        let mut x = owned(x);
        // One pass, in place; burn's own layer norm (already a single fused kernel) does the rest.
        let res: &[f32] = residual.storage();
        for (row, res) in x
            .storage_mut::<f32>()
            .chunks_exact_mut(bias.len())
            .zip(res.chunks_exact(bias.len()))
        {
            for ((v, b), r) in row.iter_mut().zip(bias).zip(res) {
                *v += b + r;
            }
        }
        norm.forward(from_flex(x))
    }

    fn packed_attention(
        q: Tensor<Self, 2>,
        k: Tensor<Self, 2>,
        v: Tensor<Self, 2>,
        packing: &Packing<Self>,
        heads: usize,
    ) -> Tensor<Self, 2> {
        let [tokens, hidden] = q.dims();
        if !(q.dtype() == DType::F32 && k.dtype() == DType::F32 && v.dtype() == DType::F32) {
            return portable::packed_attention(q, k, v, packing, heads);
        }
        let (q, k, v) = (owned(q), owned(k), owned(v));
        let shape = Rows {
            hidden,
            heads,
            head: hidden / heads.max(1),
        };
        let mut out = vec![0.0f32; tokens * hidden];
        attend(
            q.storage(),
            k.storage(),
            v.storage(),
            &mut out,
            &packing.lengths,
            shape,
            packing.alone,
        );
        from_flex(FlexTensor::from_data(TensorData::new(
            out,
            [tokens, hidden],
        )))
    }
}

fn into_flex<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    t.into_primitive().tensor()
}

fn from_flex(t: FlexTensor) -> Tensor<Flex, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// Whether the kernels below take these tensors (the model is `f32`; anything else goes the portable
/// way).
fn all_f32(xs: &[&Tensor<Flex, 2>], bias: &Tensor<Flex, 1>) -> bool {
    bias.dtype() == DType::F32 && xs.iter().all(|x| x.dtype() == DType::F32)
}

/// The tensor as one contiguous buffer of exactly its elements, at offset 0, that this caller alone
/// holds: no copy for a fresh product (never a view, never shared); a copy for anything else, so
/// that `storage()` and `storage_mut()` below see the elements in row order.
fn owned(t: Tensor<Flex, 2>) -> FlexTensor {
    let t = into_flex(t);
    // `to_contiguous` of a tensor that already qualifies is a second handle on the same buffer;
    // dropping the first leaves it unique, so a `storage_mut` that follows does not copy.
    let contiguous = t.to_contiguous();
    drop(t);
    contiguous
}

/// Widths of the packed rows.
#[derive(Debug, Clone, Copy)]
struct Rows {
    hidden: usize,
    heads: usize,
    head: usize,
}

/// Multiply-adds of attention above which rows are spread over rayon's threads (when the forward pass
/// has the pool to itself): below it, a task costs more than it saves.
const PARALLEL_ATTENTION: usize = 1 << 20;

/// Self-attention of packed rows: `out[i]` gets, per head, the softmax-weighted sum of the value rows
/// of `i`'s own sequence. Sequences are `lengths` rows each, in order.
fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    lengths: &[usize],
    s: Rows,
    alone: bool,
) {
    // The sequence (first row, length) of every row.
    let mut seq_of = Vec::with_capacity(out.len() / s.hidden.max(1));
    let mut start = 0;
    for &len in lengths {
        seq_of.extend(std::iter::repeat_n((start, len), len));
        start += len;
    }
    let work: usize = lengths.iter().map(|l| l * l).sum::<usize>() * s.hidden;
    let row = |(i, o): (usize, &mut [f32]), scores: &mut Vec<f32>| {
        if let Some(&(first, len)) = seq_of.get(i) {
            attend_row(q, k, v, o, i, first, len, s, scores);
        }
    };
    if alone && work >= PARALLEL_ATTENTION && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(s.hidden)
            .enumerate()
            .for_each_init(Vec::new, |scores, r| row(r, scores));
    } else {
        let mut scores = Vec::new();
        out.chunks_mut(s.hidden)
            .enumerate()
            .for_each(|r| row(r, &mut scores));
    }
}

/// One query row `i` of a sequence starting at row `first`, all heads.
#[allow(clippy::too_many_arguments)]
fn attend_row(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    i: usize,
    first: usize,
    len: usize,
    s: Rows,
    scores: &mut Vec<f32>,
) {
    let scale = 1.0 / (s.head as f32).sqrt();
    let keys =
        |h: usize| (first..first + len).map(move |j| &k[j * s.hidden + h * s.head..][..s.head]);
    for h in 0..s.heads {
        let qh = &q[i * s.hidden + h * s.head..][..s.head];
        scores.clear();
        scores.extend(keys(h).map(|kj| dot(qh, kj) * scale));
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for x in scores.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        let acc = &mut out[h * s.head..][..s.head];
        for (j, &p) in (first..first + len).zip(scores.iter()) {
            let vj = &v[j * s.hidden + h * s.head..][..s.head];
            acc.iter_mut().zip(vj).for_each(|(a, x)| *a += p * x);
        }
        let inv = 1.0 / sum;
        acc.iter_mut().for_each(|a| *a *= inv);
    }
}

/// Dot product in eight independent lanes, so that the compiler vectorises it (a single running sum
/// fixes the order of float additions and cannot be).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Exact GELU, `x * Φ(x) = 0.5 x (1 + erf(x / √2))`, with [`erf`].
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function, to within about 1.2e-7 of the true value everywhere (libm's scalar `erff`
/// is within about 6e-8), branch-free so that loops over it vectorise.
///
/// A rational approximation `x P(x²) / Q(x²)` on `[-4, 4]` (the one of XLA and Eigen; beyond 4,
/// `erf` rounds to ±1 in `f32`), evaluated in `f64`: its own error is under 6.5e-8, while evaluating it
/// in `f32` adds rounding of up to 4.4e-7 near |x| = 3.2, measured against `f64` `erf`.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: [f64; 7] = [
        -2.726_142_258_013_06e-10,
        2.770_681_424_959_02e-8,
        -2.101_024_020_825_08e-6,
        -5.692_506_394_623_46e-5,
        -7.349_906_303_268_55e-4,
        -2.954_599_808_540_25e-3,
        -1.609_603_332_624_15e-2,
    ];
    const Q: [f64; 5] = [
        -1.456_607_184_649_96e-5,
        -2.133_740_552_789_05e-4,
        -1.682_826_974_382_03e-3,
        -7.373_329_167_204_68e-3,
        -1.426_473_905_141_89e-2,
    ];
    // NaN stays NaN; infinities clamp to ±4 and give ±1.
    let x = f64::from(x).clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P.iter().skip(1).fold(P[0], |acc, &c| acc * x2 + c);
    let q = Q.iter().skip(1).fold(Q[0], |acc, &c| acc * x2 + c);
    (x * p / q) as f32
}
