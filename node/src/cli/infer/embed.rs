//! `agora infer embed`: not built yet.

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct EmbedArgs {}

pub fn run(_args: EmbedArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("agora infer embed is not built yet")
}
