//! `agora`: the one command-line front door to the Agora mesh.
//!
//! Each subcommand lives in its own module under `cli/` and only wires library crates together;
//! logic that is not about the command line belongs in the crate that owns the concern.

mod cli;

fn main() -> std::process::ExitCode {
    // Not `Cli::parse()`: the config file's values are installed under the flags first.
    let args = match cli::config::parse(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(err) => {
            // A bad config file is a usage error, like a bad flag (clap exits 2 for those).
            eprintln!("error: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    cli::init_tracing(args.verbose);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
