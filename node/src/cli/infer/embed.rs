//! `agora infer embed`: sentence embeddings (all-MiniLM-L6-v2) on the cached weights, offline.
//!
//! Reads JSON lines `{"text": "..."}` from stdin and writes one `{"embedding": [...]}` line per input,
//! in input order. Lines are embedded in batches of whatever has arrived (up to `--batch`), so a pipe
//! gets batch throughput and an interactive session still gets each answer as soon as it is typed.
//! Blank lines are skipped; any other line that is not such an object stops the run with an error
//! naming the line, after the answers to the lines before it have been written.

use agora_inference::backend::DevicePreference;
use agora_inference::embedding::SentenceEmbedder;
use agora_inference::model_cache;
use anyhow::{Context, bail};
use clap::Args;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Most lines embedded together.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch: u16,
    /// Where to run the model: auto (GPU when usable), cpu or cuda.
    #[arg(long, env = "AGORA_DEVICE", default_value = "auto")]
    pub device: DevicePreference,
    /// Model folder (default: all-minilm-l6-v2 in the model cache, see `scripts/fetch-models`).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
}

#[derive(serde::Deserialize)]
struct Input {
    text: String,
}

#[derive(serde::Serialize)]
struct Output<'a> {
    embedding: &'a [f32],
}

/// One line's text, or the reason it is not a valid input.
type Line = Result<String, anyhow::Error>;

pub fn run(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .model_dir
        .unwrap_or_else(|| model_cache::model_dir(model_cache::MINILM));
    let embedder = SentenceEmbedder::load(&dir, args.device)?;
    tracing::info!(device = %embedder.device(), "all-MiniLM-L6-v2 loaded");

    let batch = usize::from(args.batch);
    // Bounded: the reader stays at most two batches ahead of the model.
    let (tx, rx) = mpsc::sync_channel::<Line>(batch * 2);
    std::thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || read_lines(&tx))
        .context("cannot start the stdin reader")?;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut texts = Vec::with_capacity(batch);
    // recv fails when the reader is done (end of input).
    while let Ok(first) = rx.recv() {
        let mut failure = None;
        let mut next = Some(first);
        while let Some(line) = next.take() {
            match line {
                Ok(text) => texts.push(text),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            if texts.len() < batch {
                next = rx.try_recv().ok();
            }
        }
        write_embeddings(&embedder, &texts, &mut out)?;
        texts.clear();
        out.flush().context("cannot write to stdout")?;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_lines(tx: &mpsc::SyncSender<Line>) {
    let stdin = std::io::stdin();
    for (n, line) in stdin.lock().lines().enumerate() {
        let number = n + 1;
        let parsed = match line {
            Err(e) => Err(anyhow::anyhow!("cannot read line {number} of stdin: {e}")),
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => serde_json::from_str::<Input>(&line)
                .map(|i| i.text)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "line {number}: expected a JSON object like {{\"text\": \"...\"}}: {e}"
                    )
                }),
        };
        let stop = parsed.is_err();
        if tx.send(parsed).is_err() || stop {
            return;
        }
    }
}

fn write_embeddings(
    embedder: &SentenceEmbedder,
    texts: &[String],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if texts.is_empty() {
        return Ok(());
    }
    let vectors = embedder.embed_batch(texts)?;
    if vectors.len() != texts.len() {
        bail!(
            "the model returned {} embeddings for {} texts",
            vectors.len(),
            texts.len()
        );
    }
    for v in &vectors {
        serde_json::to_writer(&mut *out, &Output { embedding: v })
            .context("cannot write to stdout")?;
        out.write_all(b"\n").context("cannot write to stdout")?;
    }
    Ok(())
}
