//! Generated tokens per second with continuous batching against one request at a time, in one run on
//! one machine.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench -p agora-inference --bench generation_batching
//! ```
//!
//! For each concurrency `c` in 1, 4, 8: `c` chat requests (the reference prompts, ~40 prompt tokens
//! each) each generate exactly `AGORA_BENCH_TOKENS` (default 48) new tokens greedily, end token
//! ignored, prompt prefill included, loading excluded:
//!
//! - **sequential**: the requests one after another through `TextGenerator::generate` (what serving
//!   did before: one generation at a time);
//! - **batched**: all `c` submitted at once to a `GenerationScheduler` with `max_batch = c`, so they
//!   decode together.
//!
//! Rounds alternate (sequential, batched, ...) so that both see the same load on a shared machine;
//! each cell is the median over `AGORA_BENCH_ROUNDS` rounds (default 3) and the speed-up is the median
//! of the per-round ratios. Latency is the mean time from submission to a request's last token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests and benches fail loudly

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_inference::generation::{
    GenerationParams, GenerationScheduler, TextGenerator, default_model_path,
};
use agora_inference::scheduler::SchedulerConfig;
use burn::backend::Flex;

const CONCURRENCY: [usize; 3] = [1, 4, 8];

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One pass: (tokens per second over the whole pass, mean request latency in seconds).
type Pass = (f64, f64);

fn sequential(
    generator: &TextGenerator<Flex>,
    prompts: &[Vec<u32>],
    params: &GenerationParams,
) -> Pass {
    let start = Instant::now();
    let mut latency = 0.0;
    let mut tokens = 0;
    for prompt in prompts {
        let out = generator.generate(prompt, params, |_| {}).unwrap();
        tokens += out.token_ids.len();
        latency += start.elapsed().as_secs_f64();
    }
    let seconds = start.elapsed().as_secs_f64();
    (tokens as f64 / seconds, latency / prompts.len() as f64)
}

fn batched(
    generator: &Arc<TextGenerator<Flex>>,
    prompts: &[Vec<u32>],
    params: &GenerationParams,
) -> Pass {
    let config = SchedulerConfig::default()
        .with_max_batch(prompts.len())
        .with_queue_capacity(prompts.len())
        .with_max_wait(Duration::from_millis(5))
        .with_default_timeout(Duration::from_secs(3600));
    let scheduler = GenerationScheduler::spawn("bench-generate", Arc::clone(generator), config)
        .expect("worker thread");
    let start = Instant::now();
    let tickets: Vec<_> = prompts
        .iter()
        .map(|p| scheduler.submit(p.clone(), params.clone()))
        .collect();
    // Each ticket on its own thread, so each latency is measured when that request ends.
    let waiters: Vec<_> = tickets
        .into_iter()
        .map(|t| {
            std::thread::spawn(move || {
                let out = t.wait().unwrap();
                (out.token_ids.len(), start.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut latency = 0.0;
    let mut tokens = 0;
    for w in waiters {
        let (n, done) = w.join().unwrap();
        tokens += n;
        latency += done;
    }
    let seconds = start.elapsed().as_secs_f64();
    (tokens as f64 / seconds, latency / prompts.len() as f64)
}

fn main() {
    let tokens: usize = env("AGORA_BENCH_TOKENS").unwrap_or(48);
    let rounds: usize = env("AGORA_BENCH_ROUNDS").unwrap_or(3).max(1);
    let threads = rayon::current_num_threads();

    let raw = include_str!("../tests/data/generation_reference.json");
    let json: serde_json::Value = serde_json::from_str(raw).expect("fixture is JSON");
    let pool: Vec<Vec<u32>> = json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            c["input_ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_u64().expect("id") as u32)
                .collect()
        })
        .collect();
    let max_c = CONCURRENCY.iter().copied().max().unwrap_or(1);
    let prompts: Vec<Vec<u32>> = pool.iter().cycle().take(max_c).cloned().collect();
    let mean_prompt = prompts.iter().map(Vec::len).sum::<usize>() as f64 / prompts.len() as f64;

    let generator = Arc::new(
        TextGenerator::<Flex>::load(&default_model_path(), &Default::default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let params = GenerationParams {
        max_tokens: tokens,
        stop_on_eos: false,
        ..GenerationParams::default()
    };
    // Warm-up: first touches of the weights and the allocator, at both shapes.
    let warm = GenerationParams {
        max_tokens: 4,
        ..params.clone()
    };
    sequential(&generator, &prompts[..1], &warm);
    batched(&generator, &prompts[..2], &warm);

    let mut rows = Vec::new();
    for c in CONCURRENCY {
        let requests = &prompts[..c];
        let (mut seq_tps, mut seq_lat, mut bat_tps, mut bat_lat, mut ratio) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let s = sequential(&generator, requests, &params);
            let b = batched(&generator, requests, &params);
            eprintln!(
                "c={c}: sequential {:.1} tok/s, batched {:.1} tok/s",
                s.0, b.0
            );
            seq_tps.push(s.0);
            seq_lat.push(s.1);
            bat_tps.push(b.0);
            bat_lat.push(b.1);
            ratio.push(b.0 / s.0);
        }
        rows.push((
            c,
            median(seq_tps),
            median(seq_lat),
            median(bat_tps),
            median(bat_lat),
            median(ratio),
        ));
    }

    println!(
        "SmolLM2-135M-Instruct, CPU (burn Flex), {threads} threads, {tokens} new tokens per request, \
         prompts of {mean_prompt:.1} tokens on average, median of {rounds} alternating rounds"
    );
    println!();
    println!(
        "| concurrent requests | sequential tok/s | batched tok/s | speed-up | mean latency sequential | mean latency batched |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (c, s, sl, b, bl, r) in rows {
        println!("| {c} | {s:.1} | {b:.1} | {r:.2}x | {sl:.2} s | {bl:.2} s |");
    }
}
