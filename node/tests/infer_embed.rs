//! `agora infer embed` end to end: the real binary on the cached weights (`scripts/fetch-models`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests and benches fail loudly

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(input: &str, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["infer", "embed"])
        .args(args)
        .env("AGORA_DEVICE", "cpu")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn reference() -> Vec<(String, Vec<f64>)> {
    let raw = include_str!("../../inference/tests/data/embeddings_reference.json");
    let json: serde_json::Value = serde_json::from_str(raw).unwrap();
    json["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let v = s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap());
            (s["text"].as_str().unwrap().to_owned(), v.collect())
        })
        .collect()
}

fn embeddings(stdout: &[u8]) -> Vec<Vec<f64>> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn one_embedding_per_line_in_order() {
    let refs = reference();
    let picked: Vec<_> = refs.iter().step_by(5).collect();
    let input: String = picked
        .iter()
        .map(|(t, _)| serde_json::json!({ "text": t }).to_string() + "\n")
        .collect();
    for batch in ["1", "4", "32"] {
        let out = run(&input, &["--batch", batch]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = embeddings(&out.stdout);
        assert_eq!(got.len(), picked.len());
        for ((text, want), v) in picked.iter().zip(&got) {
            assert_eq!(v.len(), 384);
            let c = cosine(v, want);
            assert!(c >= 0.9999, "batch {batch}: cosine {c} for {text:?}");
        }
    }
}

#[test]
fn a_bad_line_is_named_and_earlier_answers_are_kept() {
    let input = "{\"text\": \"fine\"}\n\n{\"txt\": \"typo\"}\n{\"text\": \"never reached\"}\n";
    let out = run(input, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("text"), "{stderr}");
    assert_eq!(embeddings(&out.stdout).len(), 1);
}

#[test]
fn not_json_is_an_error() {
    let out = run("hello\n", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
    assert!(out.stdout.is_empty());
}

#[test]
fn empty_input_gives_empty_output() {
    let out = run("", &[]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_model_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        "{\"text\": \"x\"}\n",
        &["--model-dir", dir.path().to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("scripts/fetch-models"));
}
