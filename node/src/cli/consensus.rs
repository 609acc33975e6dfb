//! `agora consensus`: Yuma Consensus and emission, exactly as the Bittensor chain computes them.
//!
//! `epoch` is the interface of `spec/consensus.md`: one JSON object on stdin, one on stdout, exit
//! code 2 with a message on stderr when the input is malformed. The math lives in
//! `agora_ledger::consensus`; this file only moves bytes and maps errors to exit codes.

use agora_ledger::consensus::{EpochInput, run_epoch, samples};
use agora_ledger::emission;
use anyhow::Context;
use clap::Subcommand;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for input the command cannot use (the spec fixes it at 2).
const EXIT_MALFORMED: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum ConsensusCommand {
    /// Run one epoch: read {"params": {...}, "state": {...}} on stdin, write the result on stdout.
    ///
    /// Feed each output's `bonds` and `validator_permit` into the next input to run a sequence.
    /// Malformed input (not JSON, missing fields, wrong lengths, uid >= n) exits with code 2.
    /// Optional `state.live_commit_block` ([block or null; n], each UID's oldest live weight
    /// commit) applies commit-reveal's anti-sniping mask; see docs/protocol.md.
    Epoch,
    /// Replay a sample file (schema yuma-vectors/1, e.g. spec/yuma_samples.json) and report
    /// which expectations hold. Exits 1 if any case fails.
    Samples {
        /// The sample file.
        path: PathBuf,
    },
    /// Print the block emission (rao) for a total issuance (rao), with the halving it falls in.
    BlockEmission {
        /// Total issuance in rao (9 decimals).
        issuance: u64,
    },
}

pub fn run(cmd: ConsensusCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConsensusCommand::Epoch => epoch(),
        ConsensusCommand::Samples { path } => replay(&path),
        ConsensusCommand::BlockEmission { issuance } => {
            let block = emission::block_emission(issuance);
            let line = serde_json::json!({
                "issuance": issuance,
                "block_emission": block,
                "total_supply": emission::TOTAL_SUPPLY,
            });
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Says what is wrong on stderr and returns the malformed-input exit code.
fn malformed(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("agora consensus epoch: malformed input: {msg}");
    Ok(ExitCode::from(EXIT_MALFORMED))
}

fn epoch() -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        return malformed(format_args!("could not read stdin as UTF-8 text: {e}"));
    }
    let input: EpochInput = match serde_json::from_str(&text) {
        Ok(input) => input,
        Err(e) => return malformed(e),
    };
    let output = match run_epoch(&input) {
        Ok(output) => output,
        Err(e) => return malformed(e),
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &output).context("writing the result to stdout")?;
    writeln!(stdout).context("writing the result to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn replay(path: &PathBuf) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading sample file {}", path.display()))?;
    let cases = samples::cases(&text)?;
    let mut all_passed = true;
    println!(
        "{:<60} {:>6} {:>6} {:>8}",
        "case", "epochs", "checks", "result"
    );
    for case in &cases {
        let report =
            samples::replay_case(case, |input| run_epoch(input).map_err(|e| e.to_string()))?;
        let verdict = if report.passed() { "pass" } else { "FAIL" };
        all_passed &= report.passed();
        println!(
            "{:<60} {:>6} {:>6} {:>8}",
            report.id, report.epochs, report.checks, verdict
        );
        for line in &report.failures {
            println!("    {line}");
        }
    }
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
