//! `agora demo`, the README's main job, runs end to end on the cached models and settles every query.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::process::Command;

#[test]
fn the_demo_settles_every_query_and_proves_every_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .args([
            "--sentence",
            "One sentence to embed.",
            "--sentence",
            "Zwei.",
        ])
        .args(["--prompt", "Say hello."])
        .output()
        .expect("the agora binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("3 queries, 3 receipts signed by both sides and verified"),
        "{stdout}"
    );
    assert!(
        stdout.contains("over 3 receipts; every inclusion proof verified"),
        "{stdout}"
    );
    // Two embeddings at 2,000,000 and one generation at 5,000,000.
    assert!(stdout.contains("client        -9000000"), "{stdout}");
    assert!(stdout.contains("miner          9000000"), "{stdout}");
    // The wallets it made are real key files: an encrypted coldkey and a hotkey per wallet.
    for name in ["client", "miner"] {
        assert!(
            dir.path().join(name).join("coldkey").is_file(),
            "{name} coldkey"
        );
        assert!(
            dir.path()
                .join(name)
                .join("hotkeys")
                .join("default")
                .is_file(),
            "{name} hotkey"
        );
    }
}
