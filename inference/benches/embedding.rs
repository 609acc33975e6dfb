//! Embeddings per second, burn against PyTorch (sentence-transformers), in one run on one machine.
//!
//! ```text
//! AGORA_BENCH_PYTHON=/work/venv-embed/bin/python \
//!     cargo bench -p agora-inference --bench embedding
//! ```
//!
//! Both sides embed the same 64 texts (the reference sentences of at most 64 tokens, the kind of text a
//! search query or a chat message is), on CPU, with the same thread count (rayon's pool here,
//! `torch.set_num_threads` there; `AGORA_BENCH_THREADS` overrides, default all cores), at batch 1 (one
//! text per call) and batch 32. Without `AGORA_BENCH_PYTHON` only the burn side runs.
//! `AGORA_BENCH_SECONDS` sets the measuring time per cell (default 10).

use agora_inference::backend::DevicePreference;
use agora_inference::embedding::SentenceEmbedder;
use agora_inference::model_cache;
use std::time::Instant;

fn rate(items: usize, seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut done = 0;
    loop {
        f();
        done += items;
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= seconds {
            return done as f64 / elapsed;
        }
    }
}

fn main() {
    let threads: usize = std::env::var("AGORA_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let seconds: f64 = std::env::var("AGORA_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    rayon_threads(threads);

    let raw = include_str!("../tests/data/embeddings_reference.json");
    let json: serde_json::Value = serde_json::from_str(raw).expect("fixture is JSON");
    let pool: Vec<String> = json["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .filter(|s| s["tokens"].as_u64().unwrap_or(0) <= 64)
        .filter_map(|s| s["text"].as_str().map(str::to_owned))
        .collect();
    let texts: Vec<String> = pool.iter().cycle().take(64).cloned().collect();
    let tokens: usize = texts.len();

    let dir = model_cache::model_dir(model_cache::MINILM);
    let embedder = SentenceEmbedder::load(&dir, DevicePreference::Cpu).expect("cached weights");
    let mean_tokens = texts
        .iter()
        .map(|t| embedder.tokenize(t).map_or(0, |ids| ids.len()))
        .sum::<usize>() as f64
        / tokens as f64;

    let burn1 = rate(texts.len(), seconds, || {
        for t in &texts {
            embedder.embed(t).expect("embed");
        }
    });
    let burn32 = rate(texts.len(), seconds, || {
        for chunk in texts.chunks(32) {
            embedder.embed_batch(chunk).expect("embed");
        }
    });

    let torch = std::env::var("AGORA_BENCH_PYTHON").ok().map(|python| {
        let file = std::env::temp_dir().join(format!("agora-bench-texts-{}.json", std::process::id()));
        std::fs::write(&file, serde_json::to_string(&texts).expect("json")).expect("temp file");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/embedding_baseline.py");
        let out = std::process::Command::new(python)
            .arg(script)
            .arg(&file)
            .arg(threads.to_string())
            .arg(seconds.to_string())
            .output()
            .expect("run the PyTorch baseline");
        let _ = std::fs::remove_file(&file);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("baseline JSON");
        (
            v["batch1_per_s"].as_f64().unwrap_or(f64::NAN),
            v["batch32_per_s"].as_f64().unwrap_or(f64::NAN),
            v["torch"].as_str().unwrap_or("?").to_owned(),
        )
    });

    println!(
        "all-MiniLM-L6-v2, CPU, {threads} threads, {} texts of {mean_tokens:.1} tokens on average, {seconds} s a cell",
        texts.len()
    );
    println!("| batch | burn (embeddings/s) | PyTorch (embeddings/s) | burn / PyTorch |");
    println!("|---|---|---|---|");
    for (batch, ours, theirs) in [
        (1, burn1, torch.as_ref().map(|t| t.0)),
        (32, burn32, torch.as_ref().map(|t| t.1)),
    ] {
        match theirs {
            Some(t) => println!("| {batch} | {ours:.1} | {t:.1} | {:.2}x |", ours / t),
            None => println!("| {batch} | {ours:.1} | (not run) | |"),
        }
    }
    if let Some((_, _, version)) = &torch {
        println!("PyTorch {version} through sentence-transformers");
    }
}

/// Sizes rayon's global pool (burn's CPU backend runs its parallel kernels on it) before the first
/// model call, so that both sides use the same number of threads.
fn rayon_threads(n: usize) {
    if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
        eprintln!("cannot size the rayon pool: {e}");
    }
}
