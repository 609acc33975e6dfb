//! `agora infer generate` end to end: the real binary on the cached weights (`scripts/fetch-models`),
//! checked against the transformers reference in `inference/tests/data/generation_reference.json`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::process::{Command, Output};

fn agora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["infer", "generate"])
        .args(args)
        .env("AGORA_DEVICE", "cpu")
        .output()
        .unwrap()
}

fn reference_case(prompt: &str) -> serde_json::Value {
    let raw = include_str!("../../inference/tests/data/generation_reference.json");
    let json: serde_json::Value = serde_json::from_str(raw).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["prompt"] == prompt)
        .unwrap()
        .clone()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "agora failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn greedy_answers_match_transformers() {
    for prompt in [
        "What is the capital of France?",
        "Write a haiku about the ocean.",
    ] {
        let case = reference_case(prompt);
        let want = case["output_text"]
            .as_str()
            .unwrap()
            .replace("<|im_end|>", "");
        let out = agora(&["--prompt", prompt, "--max-tokens", "32"]);
        assert_eq!(stdout(&out), format!("{want}\n"), "{prompt:?}");
    }
}

#[test]
fn the_prompt_can_come_from_stdin_and_stop_strings_cut_the_answer() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["infer", "generate", "--stop", "Paris", "--max-tokens", "32"])
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
        .write_all(b"What is the capital of France?")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "The capital of France is \n");
}

#[test]
fn seeded_sampling_repeats() {
    let args = [
        "--prompt",
        "Tell me a story about a dragon.",
        "--max-tokens",
        "16",
        "--temperature",
        "0.8",
        "--top-p",
        "0.95",
        "--seed",
        "42",
    ];
    let a = stdout(&agora(&args));
    let b = stdout(&agora(&args));
    assert_eq!(a, b);
    assert!(a.trim().len() > 10, "{a:?}");
}

#[test]
fn missing_weights_say_how_to_fetch_them() {
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["infer", "generate", "--prompt", "hi"])
        .env("AGORA_DEVICE", "cpu")
        .env(
            "AGORA_MODELS",
            std::env::temp_dir().join("agora-no-such-models"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scripts/fetch-models"), "{stderr}");
}
