//! `agora infer`: placeholder until its issue lands.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum InferCommand {}

pub fn run(cmd: InferCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
