//! Replays every case of `spec/yuma_samples.json` (cases from subtensor's own tests) through the
//! library, epoch by epoch, carrying bonds and permits as the file says.
//!
//! The file is copied into `tests/data/` so the crate tests on its own; a second test checks the
//! copy still matches the spec's file when the shared folder is present.

use agora_ledger::consensus::{run_epoch, samples};

const SAMPLES: &str = include_str!("data/yuma_samples.json");

#[test]
fn every_sample_case_meets_its_expectations() {
    let cases = samples::cases(SAMPLES).expect("sample file parses");
    assert!(!cases.is_empty(), "no cases in the sample file");
    let mut failed = Vec::new();
    for case in &cases {
        let report =
            samples::replay_case(case, |input| run_epoch(input).map_err(|e| e.to_string()))
                .expect("case is well formed");
        eprintln!(
            "{:<60} epochs {:>2} checks {:>3} failures {:>2} info {:>3} (differing {})",
            report.id,
            report.epochs,
            report.checks,
            report.failures.len(),
            report.info_checks,
            report.info.len()
        );
        for line in &report.info {
            eprintln!("    info (not asserted): {line}");
        }
        if !report.passed() {
            failed.push(format!(
                "{}:\n  {}",
                report.id,
                report.failures.join("\n  ")
            ));
        }
    }
    assert!(failed.is_empty(), "failing cases:\n{}", failed.join("\n"));
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
