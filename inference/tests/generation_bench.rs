//! Generated tokens per second at batch 1 on the CPU: a benchmark, not a test (it is `#[ignore]`d and
//! asserts nothing about speed). Run it in release, where it means something:
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo test --release -p agora-inference --test generation_bench -- --ignored --nocapture
//! ```
//!
//! Each prompt generates exactly `GEN_BENCH_TOKENS` (default 128) new tokens greedily, past the end of
//! the answer, and prints one JSON line with the time of the generation alone (prompt prefill included,
//! loading excluded). `inference/benches/generation_compare.py` runs this binary and transformers in
//! the same session and writes the comparison.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::time::Instant;

use agora_inference::generation::{GenerationParams, TextGenerator, default_model_path};
use burn::backend::Flex;

const PROMPTS: [&str; 3] = [
    "Write a haiku about the ocean.",
    "Explain why the sky is blue in two sentences.",
    "Give me a short recipe for pancakes.",
];

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn generated_tokens_per_second() {
    let tokens: usize = std::env::var("GEN_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let started = Instant::now();
    let generator = TextGenerator::<Flex>::load(&default_model_path(), &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("loaded in {:.2} s", started.elapsed().as_secs_f64());
    let params = GenerationParams {
        max_tokens: tokens,
        stop_on_eos: false,
        ..GenerationParams::default()
    };
    // Warm-up: first touches of the weights and allocator.
    generator
        .chat(
            PROMPTS[0],
            &GenerationParams {
                max_tokens: 8,
                ..params.clone()
            },
            |_| {},
        )
        .unwrap();
    for prompt in PROMPTS {
        let started = Instant::now();
        let out = generator.chat(prompt, &params, |_| {}).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(out.token_ids.len(), tokens);
        println!(
            "{}",
            serde_json::json!({
                "prompt": prompt,
                "prompt_tokens": out.prompt_tokens,
                "new_tokens": tokens,
                "seconds": seconds,
                "tokens_per_second": tokens as f64 / seconds,
            })
        );
    }
}
