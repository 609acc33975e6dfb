//! `agora`: the one command-line front door to the Agora mesh.
//!
//! Each subcommand lives in its own module under `cli/` and only wires library crates together;
//! logic that is not about the command line belongs in the crate that owns the concern.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
