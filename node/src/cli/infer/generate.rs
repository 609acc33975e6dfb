//! `agora infer generate`: text generation with SmolLM2-135M-Instruct on the cached weights, offline.
//!
//! The prompt (from `--prompt`, or stdin when it is absent) goes through the model's chat template
//! unless `--raw` is given; the answer is streamed to stdout as it is produced, whole characters at a
//! time. A summary (tokens, speed, why it stopped) goes to stderr with `-v`, so stdout stays clean for
//! pipes.

use agora_inference::backend::DevicePreference;
use agora_inference::generation::{
    ChatMessage, FinishReason, GenerationParams, Generator, SamplingParams, default_model_path,
};
use anyhow::Context;
use clap::Args;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The user message (read from stdin when absent).
    #[arg(long)]
    pub prompt: Option<String>,
    /// A system message replacing the model's default one.
    #[arg(long)]
    pub system: Option<String>,
    /// Send the prompt to the model as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy (deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this total probability.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed for sampling; the same seed, prompt and settings give the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the text contains this string (repeatable); the string itself is not printed.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep generating past the model's end-of-answer token (for benchmarks: a fixed token count).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Where to run the model: auto (GPU when usable), cpu or cuda.
    #[arg(long, env = "AGORA_DEVICE", default_value = "auto")]
    pub device: DevicePreference,
    /// GGUF file (default: SmolLM2-135M-Instruct in the model cache, see `scripts/fetch-models`).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let prompt = match args.prompt {
        Some(p) => p,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the prompt from stdin")?;
            s
        }
    };
    let path = args.model.unwrap_or_else(default_model_path);
    let started = Instant::now();
    let generator = Generator::load(&path, args.device)?;
    tracing::info!(
        device = %generator.device(),
        seconds = started.elapsed().as_secs_f32(),
        "SmolLM2-135M-Instruct loaded"
    );

    let text = if args.raw {
        prompt
    } else {
        let mut messages = Vec::new();
        if let Some(system) = args.system {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", prompt));
        generator.tokenizer().apply_chat_template(&messages, true)
    };
    let params = GenerationParams {
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        },
        stop: args.stop,
        stop_on_eos: !args.ignore_eos,
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_error = None;
    let started = Instant::now();
    let generation = generator.generate_text(&text, &params, |piece| {
        // Flushed per piece: this is a stream, the reader sees each piece as it is made.
        if write_error.is_none()
            && let Err(e) = out.write_all(piece.as_bytes()).and_then(|()| out.flush())
        {
            write_error = Some(e);
        }
    })?;
    if let Some(e) = write_error {
        // A closed pipe (`| head`) is not a failure of the generation.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(e).context("cannot write to stdout");
    }
    writeln!(out).context("cannot write to stdout")?;
    let seconds = started.elapsed().as_secs_f64();
    let n = generation.token_ids.len();
    let finish = match &generation.finish {
        FinishReason::Eos => "end of answer".to_owned(),
        FinishReason::Stop(s) => format!("stop string {s:?}"),
        FinishReason::MaxTokens => "max tokens".to_owned(),
    };
    tracing::info!(
        prompt_tokens = generation.prompt_tokens,
        generated_tokens = n,
        seconds,
        tokens_per_second = if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        },
        finish,
        "generation done"
    );
    Ok(ExitCode::SUCCESS)
}
