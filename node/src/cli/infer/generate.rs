//! `agora infer generate`: not built yet.

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct GenerateArgs {}

pub fn run(_args: GenerateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("agora infer generate is not built yet")
}
