//! `agora infer`: run a model locally on the cached weights, with no network.

pub mod embed;
pub mod generate;

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum InferCommand {
    /// Sentence embeddings: JSON lines of {"text": ...} on stdin, one {"embedding": [...]} per line out.
    Embed(embed::EmbedArgs),
    /// Text generation, streamed to stdout as it is produced.
    Generate(generate::GenerateArgs),
}

pub fn run(cmd: InferCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InferCommand::Embed(args) => embed::run(args),
        InferCommand::Generate(args) => generate::run(args),
    }
}
