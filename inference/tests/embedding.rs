//! all-MiniLM-L6-v2 on burn against sentence-transformers.
//!
//! `data/embeddings_reference.json` holds the embeddings sentence-transformers computed for every
//! sentence (see `data/make_embedding_fixtures.py`); the weights come from the model cache
//! (`scripts/fetch-models`). Nothing here runs Python or touches the network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests and benches fail loudly

use agora_inference::backend::{Device, DevicePreference};
use agora_inference::embedding::{DIMENSION, MAX_TOKENS, SentenceEmbedder};
use agora_inference::model_cache;
use agora_inference::scheduler::SchedulerConfig;
use std::sync::OnceLock;

struct Reference {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

fn reference() -> Vec<Reference> {
    let raw = include_str!("data/embeddings_reference.json");
    let json: serde_json::Value = serde_json::from_str(raw).unwrap();
    json["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Reference {
            text: s["text"].as_str().unwrap().to_owned(),
            tokens: s["tokens"].as_u64().unwrap() as usize,
            embedding: s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

fn embedder() -> &'static SentenceEmbedder {
    static EMBEDDER: OnceLock<SentenceEmbedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let dir = model_cache::model_dir(model_cache::MINILM);
        SentenceEmbedder::load(&dir, DevicePreference::Cpu)
            .unwrap_or_else(|e| panic!("{e} (the embedding tests need the cached weights)"))
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn check_all(label: &str, refs: &[Reference], got: &[Vec<f32>]) {
    assert_eq!(refs.len(), got.len());
    let mut worst = (f64::INFINITY, "");
    for (r, g) in refs.iter().zip(got) {
        assert_eq!(g.len(), DIMENSION, "{label}: {:?}", r.text);
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "{label}: norm {norm} for {:?}",
            r.text
        );
        let c = cosine(g, &r.embedding);
        assert!(c >= 0.9999, "{label}: cosine {c} for {:?}", r.text);
        if c < worst.0 {
            worst = (c, r.text.as_str());
        }
    }
    let shown: String = worst.1.chars().take(40).collect();
    println!(
        "{label}: {} sentences, min cosine {:.9} ({shown:?})",
        refs.len(),
        worst.0
    );
}

#[test]
fn reference_set_is_big_and_varied() {
    let refs = reference();
    assert!(refs.len() >= 50);
    assert!(refs.iter().any(|r| r.text.is_empty()));
    assert!(
        refs.iter().any(|r| r.tokens == MAX_TOKENS),
        "nothing past truncation"
    );
    assert!(refs.iter().any(|r| !r.text.is_ascii()));
    assert!(
        refs.iter()
            .any(|r| !r.text.is_empty() && r.text.chars().all(|c| c.is_ascii_punctuation()))
    );
}

#[test]
fn token_counts_match_the_reference_tokenizer() {
    for r in reference() {
        let ids = embedder().tokenize(&r.text).unwrap();
        assert_eq!(ids.len(), r.tokens, "{:?}", r.text);
    }
}

#[test]
fn every_sentence_alone_matches_sentence_transformers() {
    let refs = reference();
    let got: Vec<Vec<f32>> = refs
        .iter()
        .map(|r| embedder().embed(&r.text).unwrap())
        .collect();
    check_all("unbatched", &refs, &got);
}

#[test]
fn one_padded_batch_matches_sentence_transformers() {
    // All 62 sentences in one batch: the short ones carry up to 254 padding positions, which must be
    // invisible to attention and to the mean.
    let refs = reference();
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let got = embedder().embed_batch(&texts).unwrap();
    check_all("batched", &refs, &got);
}

#[test]
fn small_batches_in_input_order_match() {
    let refs = reference();
    for chunk in refs.chunks(7) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        let got = embedder().embed_batch(&texts).unwrap();
        check_all("batches of 7", chunk, &got);
    }
}

#[test]
fn empty_batch_gives_nothing() {
    let none: [&str; 0] = [];
    assert!(embedder().embed_batch(&none).unwrap().is_empty());
}

#[test]
fn runs_on_cpu_when_asked() {
    assert_eq!(embedder().device(), &Device::Cpu);
}

#[test]
fn missing_weights_say_how_to_fetch_them() {
    let dir = std::env::temp_dir().join("agora-no-such-model-dir");
    let err = SentenceEmbedder::load(&dir, DevicePreference::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("scripts/fetch-models"), "{msg}");
    assert!(msg.contains("agora-no-such-model-dir"), "{msg}");
}

#[tokio::test]
async fn scheduler_serves_the_real_model() {
    let dir = model_cache::model_dir(model_cache::MINILM);
    let embedder = SentenceEmbedder::load(&dir, DevicePreference::Cpu).unwrap();
    let scheduler = embedder
        .into_scheduler(SchedulerConfig::default().with_max_batch(8))
        .unwrap();
    let refs = reference();
    let tickets: Vec<_> = refs
        .iter()
        .take(20)
        .map(|r| scheduler.submit(r.text.clone()))
        .collect();
    let mut got = Vec::new();
    for t in tickets {
        got.push(t.await.unwrap().unwrap());
    }
    check_all("scheduled", &refs[..20], &got);
    assert_eq!(scheduler.stats().requests().served(), 20);
}
