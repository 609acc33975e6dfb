//! Replays every case of `spec/yuma_samples.json` (cases from subtensor's own tests) through the
//! library, epoch by epoch, carrying bonds and permits as the file says.
//!
//! The file is copied into `tests/data/` so the crate tests on its own; a second test checks the
//! copy still matches the spec's file when the shared folder is present.

use agora_ledger::consensus::{run_epoch, samples};

const SAMPLES: &str = include_str!("data/yuma_samples.json");

#[test]
fn every_sample_case_meets_its_expectations() {
    let summary =
        samples::replay_file(SAMPLES, |input| run_epoch(input).map_err(|e| e.to_string()))
            .expect("sample file is well formed");
    summary.eprint();
    assert!(!summary.cases.is_empty(), "no cases in the sample file");
    assert!(
        summary.problems.is_empty(),
        "failing cases:\n{}",
        summary.problems.join("\n")
    );
}

#[test]
fn bundled_copy_matches_the_spec_file() {
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/spec/yuma_samples.json"
    );
    match std::fs::read_to_string(spec) {
        Ok(text) => assert_eq!(
            text, SAMPLES,
            "tests/data/yuma_samples.json is stale: copy {spec} over it"
        ),
        Err(e) => eprintln!("spec file not present ({e}); checked the bundled copy only"),
    }
}
