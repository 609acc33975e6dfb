//! Embedding queries per second through the mesh, against calling the same model in-process.
//!
//! ```text
//! cargo bench -p agora --bench market_throughput
//! ```
//!
//! One process, two peers on real TCP sockets on 127.0.0.1: a provider (the real `Provider` with its
//! admission, batching `ModelRunner` and durable receipt store) and a client (`MarketClient`: signs,
//! verifies, countersigns, stores, settles). The baseline is the same `ModelRunner` called directly,
//! so the ratio is what the mesh (signatures, transport, receipts, fsyncs) costs.
//!
//! - Throughput: 32 queries in flight at once, one text each, so the runner batches across queries
//!   (the issue's "batch 32 across concurrent queries"); queries per second, mesh / in-process.
//! - Added latency: one query at a time; p50 and p99 of the mesh's latency minus the in-process p50.
//!
//! Rounds alternate (in-process, mesh, in-process, ...) so both see the same load on a shared
//! machine; each cell is the median of `AGORA_BENCH_ROUNDS` rounds (default 5).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benches fail loudly

use agora::market::client::{ClientConfig, MarketClient};
use agora::market::provider::{Provider, ProviderConfig, initial_offers};
use agora::market::runner::ModelRunner;
use agora_inference::backend::DevicePreference;
use agora_ledger::store::{ReceiptStore, ReceiptWriter};
use agora_overlay::Config;
use agora_protocols::{EmbedInput, Payload, SecretKey, Task};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODEL: &str = "all-minilm-l6-v2";
const CONCURRENCY: usize = 32;
const QUERIES_PER_ROUND: usize = 256;
const LATENCY_SAMPLES: usize = 100;

fn texts() -> Vec<String> {
    (0..QUERIES_PER_ROUND)
        .map(|i| format!("Query number {i}: how do peers find providers of a model on the mesh?"))
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs[i.min(xs.len() - 1)]
}

/// Runs `QUERIES_PER_ROUND` queries with `CONCURRENCY` in flight; returns queries per second.
async fn throughput<F, Fut>(texts: &[String], run: F) -> f64
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let run = Arc::new(run);
    let queue = Arc::new(tokio::sync::Mutex::new(texts.to_vec()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let queue = Arc::clone(&queue);
        let run = Arc::clone(&run);
        workers.push(tokio::spawn(async move {
            loop {
                let Some(text) = queue.lock().await.pop() else {
                    break;
                };
                run(text).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    texts.len() as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rounds: usize = std::env::var("AGORA_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let tmp = std::env::temp_dir().join(format!("agora-bench-market-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();

        // The provider.
        let runner =
            ModelRunner::load(&[MODEL.to_string()], DevicePreference::from_env(), |_| {}).unwrap();
        let provider_key = SecretKey::generate();
        let prices = HashMap::from([(MODEL.to_string(), 1_000u64)]);
        let mut config = ProviderConfig::new(1, prices.clone());
        // The bench is one heavy client: lift the per-client limits it would otherwise hit.
        config.admission = config
            .admission
            .with_rate_limit(1_000_000)
            .with_credit_limit(u64::MAX / 2);
        let (provider_overlay, provider_events) = agora_overlay::spawn(
            &provider_key,
            Config {
                offers: initial_offers(&runner, 1, &prices),
                ..Config::loopback()
            },
            None,
        )
        .unwrap();
        let provider_store = ReceiptStore::open(&tmp.join("provider.redb")).unwrap();
        let provider_writer = ReceiptWriter::spawn(provider_store.clone(), 1024);
        let provider = Provider::new(
            provider_key,
            provider_overlay.clone(),
            runner.clone(),
            provider_store,
            provider_writer,
            config,
        );
        tokio::spawn(provider.run(provider_events, std::future::pending()));
        let mut status = provider_overlay.status().await.unwrap();
        while status.listen_addrs.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = provider_overlay.status().await.unwrap();
        }
        let provider_addr: agora_overlay::Multiaddr = format!(
            "{}/p2p/{}",
            status.listen_addrs[0],
            provider_overlay.peer_id()
        )
        .parse()
        .unwrap();

        // The client.
        let client_key = SecretKey::generate();
        let (client_overlay, _events) = agora_overlay::spawn(
            &client_key,
            Config {
                bootstrap: vec![provider_addr],
                ..Config::loopback()
            },
            None,
        )
        .unwrap();
        let client_store = ReceiptStore::open(&tmp.join("client.redb")).unwrap();
        let client_writer = ReceiptWriter::spawn(client_store.clone(), 1024);
        let client = MarketClient::new(
            client_key,
            client_overlay,
            client_store,
            client_writer,
            ClientConfig::default(),
        );
        while client
            .ranked_providers(Task::Embed, MODEL)
            .await
            .map(|r| r.is_empty())
            .unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let texts = texts();
        let direct = |runner: ModelRunner| {
            move |text: String| {
                let runner = runner.clone();
                async move {
                    let input = EmbedInput { texts: vec![text] }.to_bytes().unwrap();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    runner.run(Task::Embed, MODEL, &input, deadline).await.unwrap();
                }
            }
        };
        let mesh = |client: MarketClient| {
            move |text: String| {
                let client = client.clone();
                async move {
                    client
                        .embed(MODEL, &EmbedInput { texts: vec![text] })
                        .await
                        .unwrap();
                }
            }
        };

        // Warm up both paths.
        throughput(&texts[..64], direct(runner.clone())).await;
        throughput(&texts[..64], mesh(client.clone())).await;

        let (mut direct_qps, mut mesh_qps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let d = throughput(&texts, direct(runner.clone())).await;
            let m = throughput(&texts, mesh(client.clone())).await;
            direct_qps.push(d);
            mesh_qps.push(m);
            ratios.push(m / d);
        }

        // Latency, one query at a time, alternating.
        let (mut direct_ms, mut mesh_ms) = (Vec::new(), Vec::new());
        for text in texts.iter().take(LATENCY_SAMPLES) {
            let input = EmbedInput {
                texts: vec![text.clone()],
            };
            let t = Instant::now();
            runner
                .run(
                    Task::Embed,
                    MODEL,
                    &input.to_bytes().unwrap(),
                    Instant::now() + Duration::from_secs(60),
                )
                .await
                .unwrap();
            direct_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            client.embed(MODEL, &input).await.unwrap();
            mesh_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let direct_p50 = median(direct_ms.clone());
        let added: Vec<f64> = mesh_ms.iter().map(|m| m - direct_p50).collect();

        println!();
        println!(
            "embedding queries through the mesh vs in-process ({MODEL}, {CONCURRENCY} in flight, {QUERIES_PER_ROUND} queries a round, median of {rounds} rounds)"
        );
        println!("| path | queries/s | ratio |");
        println!("|---|---:|---:|");
        println!("| in-process ModelRunner | {:.1} | 1.00 |", median(direct_qps));
        println!(
            "| mesh (sign, TCP, verify, countersign, 2 durable stores, settle) | {:.1} | {:.2} |",
            median(mesh_qps),
            median(ratios)
        );
        println!();
        println!("latency of one query at a time ({LATENCY_SAMPLES} queries)");
        println!("| | p50 ms | p99 ms |");
        println!("|---|---:|---:|");
        println!(
            "| in-process | {:.2} | {:.2} |",
            direct_p50,
            percentile(direct_ms, 0.99)
        );
        println!(
            "| mesh | {:.2} | {:.2} |",
            median(mesh_ms.clone()),
            percentile(mesh_ms, 0.99)
        );
        println!(
            "| added by the mesh | {:.2} | {:.2} |",
            median(added.clone()),
            percentile(added, 0.99)
        );
        let _ = std::fs::remove_dir_all(&tmp);
    });
}
