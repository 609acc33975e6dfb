//! Embeddings per second, burn against PyTorch (sentence-transformers), in one run on one machine.
//!
//! ```text
//! AGORA_BENCH_PYTHON=/work/venv-embed/bin/python \
//!     cargo bench -p agora-inference --bench embed_throughput
//! ```
//!
//! Both sides embed the same 64 texts (the reference sentences of at most 64 tokens, the size of a
//! search query or a chat message) on CPU with the same thread count (rayon's pool here,
//! `torch.set_num_threads` there; `AGORA_BENCH_THREADS` overrides, default all cores), at batch 1 (one
//! text per call) and batch 32. The PyTorch side is `embedding_baseline.py`, kept running beside the
//! bench and driven over a pipe, so that rounds alternate (burn, PyTorch, burn, ...) and both see the
//! same load on a shared machine; each cell is the median over `AGORA_BENCH_ROUNDS` rounds (default 15),
//! and the ratio is the median of the per-round ratios. PyTorch runs with `OMP_WAIT_POLICY=PASSIVE`, so
//! its idle OpenMP threads do not spin on the cores while burn's round runs. Without
//! `AGORA_BENCH_PYTHON` only the burn side runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests and benches fail loudly

use agora_inference::backend::DevicePreference;
use agora_inference::embedding::SentenceEmbedder;
use agora_inference::model_cache;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// Batch sizes measured unless `AGORA_BENCH_BATCHES` (comma-separated, e.g. `1` to profile batch 1
/// alone) says otherwise.
const BATCHES: [usize; 2] = [1, 32];

struct Torch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    version: String,
}

impl Torch {
    fn start(python: &str, texts: &[String], threads: usize) -> Torch {
        let file =
            std::env::temp_dir().join(format!("agora-bench-texts-{}.json", std::process::id()));
        std::fs::write(&file, serde_json::to_string(texts).expect("json")).expect("temp file");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/embedding_baseline.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&file)
            .arg(threads.to_string())
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the PyTorch baseline");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut ready = String::new();
        stdout.read_line(&mut ready).expect("baseline ready line");
        let _ = std::fs::remove_file(&file);
        let version = ready
            .trim()
            .strip_prefix("ready ")
            .expect("ready line")
            .to_owned();
        Torch {
            child,
            stdin,
            stdout,
            version,
        }
    }

    fn pass(&mut self, batch: usize) -> f64 {
        writeln!(self.stdin, "{batch}").expect("write to baseline");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("baseline answer");
        line.trim().parse().expect("seconds")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let threads: usize = env("AGORA_BENCH_THREADS")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rounds: usize = env("AGORA_BENCH_ROUNDS").unwrap_or(15).max(1);
    let batches: Vec<usize> = std::env::var("AGORA_BENCH_BATCHES")
        .ok()
        .map(|v| v.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty() && v.iter().all(|&b| b > 0))
        .unwrap_or_else(|| BATCHES.to_vec());
    // burn's CPU backend runs its parallel kernels on rayon's global pool.
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("size the rayon pool");

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

    let dir = model_cache::model_dir(model_cache::MINILM);
    let embedder = SentenceEmbedder::load(&dir, DevicePreference::Cpu).expect("cached weights");
    let mean_tokens = texts
        .iter()
        .map(|t| embedder.tokenize(t).map_or(0, |ids| ids.len()))
        .sum::<usize>() as f64
        / texts.len() as f64;
    let burn_pass = |batch: usize| {
        let start = Instant::now();
        for chunk in texts.chunks(batch) {
            embedder.embed_batch(chunk).expect("embed");
        }
        start.elapsed().as_secs_f64()
    };
    for &batch in &batches {
        burn_pass(batch); // warm-up
    }

    let mut torch = std::env::var("AGORA_BENCH_PYTHON")
        .ok()
        .map(|python| Torch::start(&python, &texts, threads));

    let n = texts.len() as f64;
    let mut ours = vec![Vec::new(); batches.len()];
    let mut theirs = vec![Vec::new(); batches.len()];
    let mut ratios = vec![Vec::new(); batches.len()];
    for _ in 0..rounds {
        for (i, &batch) in batches.iter().enumerate() {
            let b = n / burn_pass(batch);
            ours[i].push(b);
            if let Some(t) = torch.as_mut() {
                let p = n / t.pass(batch);
                theirs[i].push(p);
                ratios[i].push(b / p);
            }
        }
    }

    println!(
        "all-MiniLM-L6-v2, CPU, {threads} threads, {} texts of {mean_tokens:.1} tokens on average, \
         median of {rounds} alternating rounds",
        texts.len()
    );
    println!("| batch | burn (embeddings/s) | PyTorch (embeddings/s) | burn / PyTorch |");
    println!("|---|---|---|---|");
    for (i, batch) in batches.iter().enumerate() {
        let b = median(ours[i].clone());
        if theirs[i].is_empty() {
            println!("| {batch} | {b:.1} | (not run) | |");
        } else {
            let p = median(theirs[i].clone());
            let r = median(ratios[i].clone());
            println!("| {batch} | {b:.1} | {p:.1} | {r:.2}x |");
        }
    }
    if let Some(mut t) = torch.take() {
        println!("PyTorch {} through sentence-transformers", t.version);
        drop(t.stdin);
        let _ = t.child.wait();
    }
}
