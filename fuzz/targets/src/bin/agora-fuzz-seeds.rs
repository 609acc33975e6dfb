//! Writes the seed corpora: `agora-fuzz-seeds [CORPUS_DIR]` (default `fuzz/corpus`) puts each
//! seed of [`agora_fuzz_targets::seeds::all`] at `CORPUS_DIR/<target>/seed-<name>`, replacing a
//! seed of the same name and leaving every other file (inputs the fuzzer found) alone.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fuzz/corpus"));
    match write(&dir) {
        Ok(n) => {
            println!("wrote {n} seeds under {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agora-fuzz-seeds: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &std::path::Path) -> Result<usize, Box<dyn std::error::Error>> {
    let scratch = std::env::temp_dir().join(format!("agora-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let seeds = agora_fuzz_targets::seeds::all(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let seeds = seeds?;
    for seed in &seeds {
        let folder = dir.join(seed.target);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join(format!("seed-{}", seed.name)), &seed.bytes)?;
    }
    Ok(seeds.len())
}
