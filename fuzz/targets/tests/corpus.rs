//! Every file of every target's corpus (`fuzz/corpus/<target>/`) through its target function: what
//! the fuzzer found, and the crashes it found once, replayed as a plain test on every run.

use agora_fuzz_targets::{TARGETS, seeds};
use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("corpus")
}

#[test]
fn every_corpus_file_runs_clean() {
    let root = corpus_root();
    let mut total = 0;
    for target in TARGETS {
        let dir = root.join(target.name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {} at {}: {e}", target.name, dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus of {} is empty", target.name);
        for file in &files {
            let data = std::fs::read(file).expect("a readable corpus file");
            (target.run)(&data);
        }
        println!("{:<22} {:>5} inputs", target.name, files.len());
        total += files.len();
    }
    println!("{total} corpus inputs in all");
}

#[test]
fn every_corpus_folder_is_a_target() {
    for entry in std::fs::read_dir(corpus_root()).expect("fuzz/corpus") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            agora_fuzz_targets::target(&name).is_some(),
            "fuzz/corpus/{name} belongs to no target"
        );
    }
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz_targets");
    for target in TARGETS {
        let file = dir.join(format!("{}.rs", target.name));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!("agora_fuzz_targets::{}(", target.name)),
            "{} does not call its target",
            file.display()
        );
    }
}

/// The seeds are made fresh here (the model files are optional), so a change of format that the
/// committed corpus no longer exercises still runs through every target.
#[test]
fn fresh_seeds_run_clean_and_cover_every_target() {
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let seeds = seeds::all(scratch.path()).expect("seeds");
    for target in TARGETS {
        assert!(
            seeds.iter().any(|s| s.target == target.name),
            "no seed for {}",
            target.name
        );
    }
    for seed in &seeds {
        let target = agora_fuzz_targets::target(seed.target).expect("a known target");
        (target.run)(&seed.bytes);
    }
}

/// The generated seeds reach past the first refusal: the valid messages are accepted by the real
/// decoders, so the fuzzer starts from inputs that exercise the deep checks.
#[test]
fn seeds_are_accepted_where_they_are_valid() {
    use agora_ledger::anchor::InclusionProof;
    use agora_ledger::state::tx::decode_tx;
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let seeds = seeds::all(scratch.path()).expect("seeds");
    let seed = |target: &str, name: &str| {
        seeds
            .iter()
            .find(|s| s.target == target && s.name == name)
            .map(|s| s.bytes.clone())
            .unwrap_or_else(|| panic!("no seed {target}/{name}"))
    };
    let proof = InclusionProof::from_bytes(&seed("inclusion_proof", "bytes")).expect("decodes");
    proof.verify().expect("the seed proof verifies");
    assert!(agora_protocols::Receipt::from_bytes(&seed("receipt", "countersigned")).is_ok());
    let state = agora_fuzz_targets::fixtures::ledger_state();
    let hot = agora_fuzz_targets::fixtures::hotkey().public();
    assert!(state.hotkey(&hot).is_some(), "the fixture hotkey is bound");
    for name in ["transfer", "commit-weights"] {
        let tx = decode_tx(&seed("ledger_tx", &format!("signed-{name}"))).expect("decodes");
        let mut state = state.clone();
        state
            .apply_tx(&tx)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
