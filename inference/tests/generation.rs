//! Text generation: the GGUF reader on hand-made and hostile files, dequantisation, and SmolLM2 checked
//! against Hugging Face transformers loading the same GGUF (`data/generation_reference.json`, written
//! by `data/generation_make_reference.py`): tokenizer ids, the chat template, and 32 greedy tokens per
//! prompt, token for token. Plus seeded sampling, stop strings and streaming.
//!
//! The weights come from the model cache (`scripts/fetch-models`); nothing here runs Python or touches
//! the network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::sync::OnceLock;

use agora_inference::generation::gguf::{
    GgmlType, Gguf, GgufError, MetadataArray, MetadataValue, dequantize, f16_to_f32,
};
use agora_inference::generation::{
    FinishReason, GenerationParams, SamplingParams, TextGenerator, default_model_path,
};
use burn::backend::Flex;
use proptest::prelude::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------
// A tiny GGUF writer, to build valid files and then break them.

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A version-3 file with one metadata entry of every type, an alignment of 64 and two tensors
/// (an F32 vector of 4 and a Q4_1 matrix 32 x 2).
fn sample_file() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&2u64.to_le_bytes()); // tensors
    out.extend_from_slice(&15u64.to_le_bytes()); // metadata entries
    let kv = |out: &mut Vec<u8>, key: &str, ty: u32, value: &[u8]| {
        put_str(out, key);
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(value);
    };
    kv(&mut out, "t.u8", 0, &[200]);
    kv(&mut out, "t.i8", 1, &(-5i8).to_le_bytes());
    kv(&mut out, "t.u16", 2, &60000u16.to_le_bytes());
    kv(&mut out, "t.i16", 3, &(-300i16).to_le_bytes());
    kv(&mut out, "t.u32", 4, &70000u32.to_le_bytes());
    kv(&mut out, "t.i32", 5, &(-70000i32).to_le_bytes());
    kv(&mut out, "t.f32", 6, &1.5f32.to_le_bytes());
    kv(&mut out, "t.bool", 7, &[1]);
    let mut s = Vec::new();
    put_str(&mut s, "héllo");
    kv(&mut out, "t.string", 8, &s);
    kv(&mut out, "t.u64", 10, &(1u64 << 40).to_le_bytes());
    kv(&mut out, "t.i64", 11, &(-1i64 << 40).to_le_bytes());
    kv(&mut out, "t.f64", 12, &2.25f64.to_le_bytes());
    let mut arr = Vec::new();
    arr.extend_from_slice(&8u32.to_le_bytes());
    arr.extend_from_slice(&2u64.to_le_bytes());
    put_str(&mut arr, "a b");
    put_str(&mut arr, "c");
    kv(&mut out, "t.strings", 9, &arr);
    let mut nested = Vec::new();
    nested.extend_from_slice(&9u32.to_le_bytes());
    nested.extend_from_slice(&1u64.to_le_bytes());
    nested.extend_from_slice(&5u32.to_le_bytes());
    nested.extend_from_slice(&2u64.to_le_bytes());
    nested.extend_from_slice(&7i32.to_le_bytes());
    nested.extend_from_slice(&(-7i32).to_le_bytes());
    kv(&mut out, "t.nested", 9, &nested);
    kv(&mut out, "general.alignment", 4, &64u32.to_le_bytes());

    // Tensor infos.
    put_str(&mut out, "vec");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&4u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // F32
    out.extend_from_slice(&0u64.to_le_bytes());
    put_str(&mut out, "mat");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&32u64.to_le_bytes());
    out.extend_from_slice(&2u64.to_le_bytes());
    out.extend_from_slice(&3u32.to_le_bytes()); // Q4_1
    out.extend_from_slice(&64u64.to_le_bytes());

    while out.len() % 64 != 0 {
        out.push(0);
    }
    for v in [1.0f32, -2.0, 0.5, 3.25] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.resize(out.len() + 48, 0); // pad the 16-byte vector to the next 64-byte boundary
    out.extend_from_slice(&q4_1_block(0.5, -1.0));
    out.extend_from_slice(&q4_1_block(0.25, 2.0));
    out
}

/// f32 to IEEE half, for values that are exact in half precision (all the test scales are).
fn f32_to_f16_exact(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if v == 0.0 {
        return sign;
    }
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let man = ((bits >> 13) & 0x3ff) as u16;
    assert!((1..31).contains(&exp), "not a normal half: {v}");
    sign | ((exp as u16) << 10) | man
}

/// A Q4_1 block whose quants are 0, 1, ..., 15, 15, 14, ..., 0 (low nibbles first, as ggml packs).
fn q4_1_block(d: f32, m: f32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&f32_to_f16_exact(d).to_le_bytes());
    b.extend_from_slice(&f32_to_f16_exact(m).to_le_bytes());
    for j in 0..16u8 {
        let lo = j; // element j
        let hi = 15 - j; // element j + 16
        b.push(lo | (hi << 4));
    }
    b
}

#[test]
fn gguf_reads_every_metadata_type_and_aligned_tensors() {
    let g = Gguf::parse(sample_file()).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 64);
    let md = g.metadata();
    assert_eq!(md["t.u8"], MetadataValue::U8(200));
    assert_eq!(md["t.i8"], MetadataValue::I8(-5));
    assert_eq!(md["t.u16"], MetadataValue::U16(60000));
    assert_eq!(md["t.i16"], MetadataValue::I16(-300));
    assert_eq!(md["t.u32"], MetadataValue::U32(70000));
    assert_eq!(md["t.i32"], MetadataValue::I32(-70000));
    assert_eq!(md["t.f32"], MetadataValue::F32(1.5));
    assert_eq!(md["t.bool"], MetadataValue::Bool(true));
    assert_eq!(g.get_str("t.string").unwrap(), "héllo");
    assert_eq!(g.get_u64("t.u64").unwrap(), 1 << 40);
    assert_eq!(md["t.i64"], MetadataValue::I64(-1 << 40));
    assert_eq!(md["t.f64"], MetadataValue::F64(2.25));
    assert_eq!(g.get_string_array("t.strings").unwrap(), ["a b", "c"]);
    assert_eq!(
        g.get_array("t.nested").unwrap(),
        &MetadataArray::Array(vec![MetadataArray::I32(vec![7, -7])])
    );
    assert!(matches!(
        g.get_str("t.u8"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(g.get_str("nope"), Err(GgufError::MissingKey(_))));

    assert_eq!(g.tensors().len(), 2);
    assert_eq!(g.dequantize("vec").unwrap(), [1.0, -2.0, 0.5, 3.25]);
    let mat = g.tensor("mat").unwrap();
    assert_eq!(
        (mat.ty, mat.dims.as_slice(), mat.size),
        (GgmlType::Q4_1, &[32u64, 2][..], 40)
    );
    let values = g.dequantize("mat").unwrap();
    assert_eq!(values.len(), 64);
    assert_eq!(values[0], -1.0);
    assert_eq!(values[32 + 16], 0.25 * 15.0 + 2.0);
    assert!(matches!(
        g.dequantize("absent"),
        Err(GgufError::MissingTensor(_))
    ));
}

#[test]
fn q4_1_dequantises_a_hand_made_block_like_ggml() {
    // ggml: y[j] = (qs[j] & 0xF) * d + m, y[j + 16] = (qs[j] >> 4) * d + m.
    let block = q4_1_block(0.5, -1.0);
    let got = dequantize(GgmlType::Q4_1, &block).unwrap();
    let want: Vec<f32> = (0..32)
        .map(|i| {
            let q = if i < 16 { i } else { 15 - (i - 16) };
            q as f32 * 0.5 - 1.0
        })
        .collect();
    assert_eq!(got, want);
    // Two blocks, the second with a negative scale and a fractional minimum.
    let mut two = block.clone();
    two.extend(q4_1_block(-0.125, 0.375));
    let got = dequantize(GgmlType::Q4_1, &two).unwrap();
    assert_eq!(got.len(), 64);
    assert_eq!(got[32], 0.375);
    assert_eq!(got[33], -0.125 + 0.375);
    assert_eq!(got[63], 0.375); // element 31 of the block has quant 0
}

#[test]
fn q8_0_f16_and_bf16_dequantise_exactly() {
    let mut block = f32_to_f16_exact(0.25).to_le_bytes().to_vec();
    block.extend((0..32).map(|i: i32| ((i - 16) as i8) as u8));
    let got = dequantize(GgmlType::Q8_0, &block).unwrap();
    let want: Vec<f32> = (0..32).map(|i| (i - 16) as f32 * 0.25).collect();
    assert_eq!(got, want);

    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
    assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24)); // largest subnormal
    assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    assert!(f16_to_f32(0x7e00).is_nan());
    let f16s: Vec<u8> = [0x3c00u16, 0x3555]
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
    assert_eq!(
        dequantize(GgmlType::F16, &f16s).unwrap(),
        [1.0, 0.333_251_95]
    );
    let bf16s: Vec<u8> = [0x3f80u16, 0xc040]
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
    assert_eq!(dequantize(GgmlType::BF16, &bf16s).unwrap(), [1.0, -3.0]);
    assert!(dequantize(GgmlType::Q4_K, &[0; 144]).is_none());
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error() {
    let file = sample_file();
    for len in 0..file.len() {
        let result = Gguf::parse(file[..len].to_vec());
        assert!(result.is_err(), "a file cut at {len} bytes parsed");
    }
}

/// Overwrites 8 bytes at `at` with `v`.
fn patch_u64(mut file: Vec<u8>, at: usize, v: u64) -> Vec<u8> {
    file[at..at + 8].copy_from_slice(&v.to_le_bytes());
    file
}

#[test]
fn corrupt_headers_are_errors_without_huge_allocations() {
    let file = sample_file();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("magic", {
            let mut f = file.clone();
            f[0] = b'X';
            f
        }),
        ("version 1", {
            let mut f = file.clone();
            f[4] = 1;
            f
        }),
        ("tensor count", patch_u64(file.clone(), 8, u64::MAX)),
        ("tensor count 2^40", patch_u64(file.clone(), 8, 1 << 40)),
        ("metadata count", patch_u64(file.clone(), 16, u64::MAX / 2)),
        ("key length", patch_u64(file.clone(), 24, u64::MAX)),
        ("value type", {
            let mut f = file.clone();
            f[24 + 8 + 4] = 99; // type tag of the first entry
            f
        }),
        ("string array count", {
            // The "t.strings" array: find its count right after the element type.
            let key = b"t.strings";
            let at = file.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 4;
            patch_u64(file.clone(), at, u64::MAX / 8)
        }),
        ("tensor offset", {
            let key = b"mat";
            let at = file.windows(key.len()).rposition(|w| w == key).unwrap() + 3 + 4 + 16 + 4;
            patch_u64(file.clone(), at, 1 << 20)
        }),
        ("misaligned tensor offset", {
            let key = b"mat";
            let at = file.windows(key.len()).rposition(|w| w == key).unwrap() + 3 + 4 + 16 + 4;
            patch_u64(file.clone(), at, 8)
        }),
        ("tensor dims overflow", {
            let key = b"mat";
            let at = file.windows(key.len()).rposition(|w| w == key).unwrap() + 3 + 4;
            patch_u64(patch_u64(file.clone(), at, 1 << 40), at + 8, 1 << 40)
        }),
        ("tensor dims not a block multiple", {
            let key = b"mat";
            let at = file.windows(key.len()).rposition(|w| w == key).unwrap() + 3 + 4;
            patch_u64(file.clone(), at, 31)
        }),
    ];
    for (what, bytes) in cases {
        let result = Gguf::parse(bytes);
        assert!(result.is_err(), "{what}: parsed");
        let msg = result.unwrap_err().to_string();
        assert!(!msg.is_empty(), "{what}");
    }
}

#[test]
fn deeply_nested_arrays_are_refused() {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    put_str(&mut out, "deep");
    out.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..1000 {
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
    }
    out.extend_from_slice(&[0; 64]);
    assert!(matches!(Gguf::parse(out), Err(GgufError::NestingTooDeep)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Gguf::parse(bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_magic_never_panic(
        version in 2u32..=3,
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut file = b"GGUF".to_vec();
        file.extend_from_slice(&version.to_le_bytes());
        file.extend(bytes);
        let _ = Gguf::parse(file);
    }

    #[test]
    fn mutations_of_a_valid_file_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut file = sample_file();
        let len = file.len();
        for (at, byte) in edits {
            file[at.index(len)] = byte;
        }
        if let Ok(g) = Gguf::parse(file) {
            for t in g.tensors().to_vec() {
                let _ = g.dequantize(&t.name);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// SmolLM2 against transformers.

fn reference() -> &'static Value {
    static REFERENCE: OnceLock<Value> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/generation_reference.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn generator() -> &'static TextGenerator<Flex> {
    static GENERATOR: OnceLock<TextGenerator<Flex>> = OnceLock::new();
    GENERATOR.get_or_init(|| {
        TextGenerator::load(&default_model_path(), &Default::default())
            .unwrap_or_else(|e| panic!("{e} (the generation tests need the cached weights)"))
    })
}

#[test]
fn tokenizer_and_chat_template_match_transformers() {
    let generator = generator();
    let tok = generator.tokenizer();
    let r = reference();
    for case in r["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let chat = tok.apply_chat_template(
            &[agora_inference::generation::ChatMessage::new(
                "user", prompt,
            )],
            true,
        );
        assert_eq!(
            chat,
            case["chat_text"].as_str().unwrap(),
            "template for {prompt:?}"
        );
        assert_eq!(
            tok.encode(&chat).unwrap(),
            ids(&case["input_ids"]),
            "ids for {prompt:?}"
        );
        // Decoding the reference's output gives transformers' text.
        assert_eq!(
            tok.decode(&ids(&case["output_ids"]), false),
            case["output_text"].as_str().unwrap()
        );
    }
    for case in r["tokenizer_cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(text).unwrap(), want, "ids for {text:?}");
        assert_eq!(tok.decode(&want, false), text, "round trip of {text:?}");
    }
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
}

#[test]
fn greedy_output_matches_transformers_token_for_token() {
    let generator = generator();
    let r = reference();
    let new_tokens = r["new_tokens"].as_u64().unwrap() as usize;
    let params = GenerationParams {
        max_tokens: new_tokens,
        ..GenerationParams::default()
    };
    let eos = generator.tokenizer().eos_id().unwrap();
    let mut full_length = 0;
    let mut mismatches = Vec::new();
    for case in r["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let mut want = ids(&case["output_ids"]);
        // transformers keeps the end token in the sequence; we report it as the finish reason.
        let ends_with_eos = want.last() == Some(&eos);
        if ends_with_eos {
            want.pop();
        }
        let mut streamed = String::new();
        let out = generator
            .generate(&ids(&case["input_ids"]), &params, |piece| {
                streamed.push_str(piece)
            })
            .unwrap();
        if out.token_ids != want {
            let first = out.token_ids.iter().zip(&want).position(|(a, b)| a != b);
            mismatches.push(format!(
                "{prompt:?}: first difference at {first:?}\n  got  {:?}\n  want {want:?}",
                out.token_ids
            ));
            continue;
        }
        assert_eq!(
            out.finish,
            if ends_with_eos {
                FinishReason::Eos
            } else {
                FinishReason::MaxTokens
            },
            "{prompt:?}"
        );
        assert_eq!(streamed, out.text, "streamed pieces add up to the text");
        assert_eq!(out.text, generator.tokenizer().decode(&want, true));
        if want.len() == new_tokens {
            full_length += 1;
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(
        full_length >= 5,
        "only {full_length} prompts ran the full {new_tokens} tokens"
    );
}

fn sampled(seed: u64) -> agora_inference::generation::Generation {
    let params = GenerationParams {
        max_tokens: 24,
        sampling: SamplingParams {
            temperature: 0.9,
            top_p: 0.9,
            seed,
        },
        ..GenerationParams::default()
    };
    generator()
        .chat("Tell me a story about a dragon.", &params, |_| {})
        .unwrap()
}

#[test]
fn seeded_sampling_is_reproducible() {
    let a = sampled(7);
    let b = sampled(7);
    assert_eq!(a, b);
    assert!(!a.token_ids.is_empty());
    let others: Vec<_> = (8..11).map(sampled).collect();
    assert!(
        others.iter().any(|o| o.token_ids != a.token_ids),
        "different seeds all gave the same tokens"
    );
}

#[test]
fn stop_strings_end_generation_and_are_cut_from_the_text() {
    let generator = generator();
    let params = GenerationParams {
        max_tokens: 32,
        stop: vec!["Paris".into(), "never appears".into()],
        ..GenerationParams::default()
    };
    let mut streamed = String::new();
    let out = generator
        .chat("What is the capital of France?", &params, |piece| {
            streamed.push_str(piece)
        })
        .unwrap();
    assert_eq!(out.finish, FinishReason::Stop("Paris".into()));
    assert_eq!(out.text, "The capital of France is ");
    assert_eq!(
        streamed, out.text,
        "nothing past the stop string was streamed"
    );

    // A stop string spanning several tokens, starting mid-token.
    let params = GenerationParams {
        max_tokens: 32,
        stop: vec!["ital of Fr".into()],
        ..GenerationParams::default()
    };
    let out = generator
        .chat("What is the capital of France?", &params, |_| {})
        .unwrap();
    assert_eq!(out.finish, FinishReason::Stop("ital of Fr".into()));
    assert_eq!(out.text, "The cap");
}

#[test]
fn max_tokens_bounds_the_output_and_bad_parameters_are_errors() {
    let generator = generator();
    let params = GenerationParams {
        max_tokens: 3,
        ..GenerationParams::default()
    };
    let out = generator
        .chat("Write a haiku about the ocean.", &params, |_| {})
        .unwrap();
    assert_eq!(out.token_ids.len(), 3);
    assert_eq!(out.finish, FinishReason::MaxTokens);

    let bad = GenerationParams {
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 0.0,
            seed: 0,
        },
        ..GenerationParams::default()
    };
    assert!(generator.chat("hi", &bad, |_| {}).is_err());
    assert!(generator.generate(&[], &params, |_| {}).is_err());
    assert!(generator.generate(&[u32::MAX], &params, |_| {}).is_err());
    let huge = GenerationParams {
        max_tokens: 1 << 20,
        ..GenerationParams::default()
    };
    assert!(generator.chat("hi", &huge, |_| {}).is_err());
}

#[test]
fn a_missing_model_file_says_how_to_fetch_it() {
    let path = std::env::temp_dir().join("agora-no-such-model/SmolLM2.gguf");
    let err = TextGenerator::<Flex>::load(&path, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("scripts/fetch-models"), "{err}");
}
