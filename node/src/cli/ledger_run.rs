//! `agora ledger run`: the local log's clock. Heights (and with them epochs, emission and reveal
//! windows) only advance when someone seals a block; this seals an empty one every `--block-time`
//! milliseconds until SIGTERM or Ctrl-C.
//!
//! Each block takes the writer lock, seals and releases it at once, waiting (bounded) while another
//! writer holds it, so that the CLI and validators can append their transactions in between. Run one
//! per ledger: two clocks would only make blocks come twice as fast.

use super::ledger::LedgerPaths;
use agora::market::validator::seal_empty;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `agora ledger run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub ledger: LedgerPaths,
    /// Milliseconds between blocks (the chain's is 12 000; tests use a few hundred).
    #[arg(long, default_value_t = 12_000, value_name = "MS")]
    pub block_time: u64,
    /// Stop after this many blocks (default: run until stopped).
    #[arg(long, value_name = "N")]
    pub blocks: Option<u64>,
    /// How long to wait for another writer's lock before giving up, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub lock_wait: u64,
}

/// Runs the clock.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let path = args.ledger.log_path()?;
    // The genesis must exist: blocks of a ledger nobody can replay are of no use.
    let genesis = args.ledger.genesis_path()?;
    if !genesis.exists() {
        anyhow::bail!(
            "no ledger genesis at {} (create one with `agora ledger init`)",
            genesis.display()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The signal listener runs on its own thread; the sealing loop only checks the flag.
    std::thread::spawn(move || {
        runtime.block_on(async { super::node::shutdown_signal().await });
        flag.store(true, Ordering::SeqCst);
    });
    let block_time = Duration::from_millis(args.block_time.max(1));
    let wait = Duration::from_millis(args.lock_wait);
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "sealing a block every {} ms into {}",
        block_time.as_millis(),
        path.display()
    )?;
    stdout.flush()?;
    let mut next = Instant::now() + block_time;
    let mut sealed = 0u64;
    while !stop.load(Ordering::SeqCst) && args.blocks.is_none_or(|n| sealed < n) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += block_time;
        // A late clock does not try to catch up with a burst of blocks.
        if next < Instant::now() {
            next = Instant::now() + block_time;
        }
        let block = seal_empty(&path, wait)
            .with_context(|| format!("sealing a block into {}", path.display()))?;
        sealed += 1;
        tracing::info!(height = block.height, "sealed");
    }
    writeln!(stdout, "stopped after {sealed} blocks")?;
    Ok(ExitCode::SUCCESS)
}
