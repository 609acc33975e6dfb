//! `agora consensus`: placeholder until its issue lands.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ConsensusCommand {}

pub fn run(cmd: ConsensusCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
