//! `agora wallet`: placeholder until its issue lands.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum WalletCommand {}

pub fn run(cmd: WalletCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
