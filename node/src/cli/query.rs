//! `agora query`: buy one answer from the mesh and print it with its receipt.
//!
//! The command joins the mesh as a client peer, finds providers, asks the best by policy (or holds an
//! open call), checks and countersigns the answer, stores the receipt, and prints a table (or JSON).
//! `--redundancy k` asks k providers and says whether they agree.

use super::ledger::LedgerPaths;
use super::node::{KeyArgs, MeshArgs, TempStore, receipts_location};
use agora::market::client::{
    Agreement, ClientConfig, MarketClient, MarketError, Mode, Settled, short_peer,
};
use agora_ledger::store::{ReceiptStore, ReceiptWriter};
use agora_protocols::{
    ChatMessage, EmbedInput, EmbedOutput, GenerateInput, GenerateOutput, Sampling, Task,
};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How a client peer joins the mesh and pays: shared by `agora query` and `agora gateway`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// The receipt store [default: ~/.agora/receipts.redb; with --ephemeral-key a temporary file].
    #[arg(long, env = "AGORA_RECEIPTS", value_name = "PATH")]
    pub receipts: Option<PathBuf>,
    /// The most paid for one query, in units of 1e-9.
    #[arg(long, default_value_t = ClientConfig::default().max_price, value_name = "UNITS")]
    pub max_price: u64,
    /// Overall deadline of one query, failovers included, in milliseconds.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub deadline_ms: u64,
    /// Most providers tried for one query.
    #[arg(long, default_value_t = ClientConfig::default().max_attempts, value_name = "N")]
    pub attempts: usize,
    /// Direct (pick a provider by policy) or open (announce, collect offers, award).
    #[arg(long, value_enum, default_value_t = ModeArg::Direct)]
    pub mode: ModeArg,
    /// The ledger: where it exists, each provider's consensus incentive is its reputation.
    #[command(flatten)]
    pub ledger: LedgerPaths,
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Ask the best provider by policy.
    Direct,
    /// Gossip an announcement and award the best offer.
    Open,
}

impl ClientArgs {
    /// Joins the mesh and opens the receipt store; the guard deletes a temporary store on drop.
    pub async fn connect(
        &self,
        command: &str,
    ) -> anyhow::Result<(MarketClient, Option<TempStore>)> {
        let (client, temp, _) = self.connect_observed(command, "client").await?;
        Ok((client, temp))
    }

    /// [`Self::connect`], counting into one metrics registry; also returns the status page's
    /// context (receipt store and ledger filled in) for commands that serve `--http`.
    pub async fn connect_observed(
        &self,
        command: &str,
        role: &'static str,
    ) -> anyhow::Result<(
        MarketClient,
        Option<TempStore>,
        agora::status::StatusContext,
    )> {
        let key = self.key.load()?;
        let mut config = self.mesh.overlay_config()?;
        // A client is dialed back only on its connections: ephemeral ports, so that it never
        // collides with a miner or node on this machine holding the well-known port.
        if config.listen == agora_overlay::Config::default().listen {
            config.listen = vec![
                agora_overlay::config::tcp_addr(std::net::Ipv4Addr::UNSPECIFIED, 0),
                agora_overlay::config::quic_addr(std::net::Ipv4Addr::UNSPECIFIED, 0),
            ];
        }
        let subnet = config.subnets.first().copied().unwrap_or(1);
        let (path, temp) = receipts_location(self.receipts.as_deref(), &self.key, command)?;
        let store = ReceiptStore::open(&path)
            .with_context(|| format!("opening the receipt store {}", path.display()))?;
        let writer = ReceiptWriter::spawn(store.clone(), 1024);
        let (overlay, mut events, status) = super::node::spawn_observed(&key, config, role)?;
        let status = status
            .with_receipts(store.clone())
            .with_ledger(super::node::ledger_source(&self.ledger, subnet));
        // A client serves nothing: refuse anything that arrives instead of letting it time out.
        let refuser = overlay.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let response = agora_overlay::error_response(
                    agora_protocols::QueryErrorKind::UnknownModel,
                    "this peer is a client; it serves no models",
                );
                let _ = refuser.respond(event.into_reply(), response).await;
            }
        });
        let client = MarketClient::new(
            key,
            overlay,
            store,
            writer,
            ClientConfig {
                subnet,
                deadline: Duration::from_millis(self.deadline_ms),
                max_attempts: self.attempts.max(1),
                max_price: self.max_price,
                mode: match self.mode {
                    ModeArg::Direct => Mode::Direct,
                    ModeArg::Open => Mode::Open,
                },
                ..ClientConfig::default()
            },
        );
        client.set_metrics(status.metrics.clone());
        // Off the async threads: with a chain, reading the ledger first brings the mirror up to
        // date through the chain session's own runtime.
        let ledger = self.ledger.clone();
        match tokio::task::spawn_blocking(move || reputation(&ledger, subnet)).await {
            Ok(Ok(reputation)) => client.set_reputation(reputation),
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "no consensus reputation"),
            Err(e) => tracing::warn!(error = %e, "reading the reputation failed"),
        }
        Ok((client, temp, status))
    }
}

/// Each provider's reputation on `subnet`: its consensus incentive over the subnet's highest, by
/// the peer id its hotkey gives. Empty where this machine has no ledger genesis.
fn reputation(
    ledger: &LedgerPaths,
    subnet: u16,
) -> anyhow::Result<Vec<(agora_overlay::PeerId, f64)>> {
    if !ledger.genesis_path()?.exists() {
        return Ok(Vec::new());
    }
    let state = ledger.state()?;
    let Some(subnet) = state.subnet(subnet) else {
        return Ok(Vec::new());
    };
    let max = subnet
        .neurons
        .iter()
        .map(|n| n.incentive_u16)
        .max()
        .unwrap_or(0);
    if max == 0 {
        return Ok(Vec::new());
    }
    Ok(subnet
        .neurons
        .iter()
        .filter_map(|n| {
            let peer = agora_overlay::peer_id_of(&n.hotkey).ok()?;
            Some((peer, f64::from(n.incentive_u16) / f64::from(max)))
        })
        .collect())
}

/// Ask the mesh: embed texts or continue a chat, pay, print the answer and its receipt.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to ask for.
    #[arg(long, value_parser = parse_task)]
    pub task: Task,
    /// The model [default: all-minilm-l6-v2 for embed, smollm2-135m-instruct for generate].
    #[arg(long)]
    pub model: Option<String>,
    /// Text to embed (repeatable), or the user message to answer.
    #[arg(long = "input", required = true, value_name = "TEXT")]
    pub inputs: Vec<String>,
    /// A system message before the user's (generate).
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens generated.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy (reproducible, comparable across providers).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Seed of the sampler when the temperature is above 0.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ask this many providers and compare their answers (each is paid).
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub redundancy: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_task(text: &str) -> Result<Task, String> {
    text.parse().map_err(|e| format!("{e}"))
}

/// Runs `agora query`.
pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(query(args))
}

async fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let (client, _temp) = args.client.connect("query").await?;
    let k = args.redundancy.max(1);
    let code = answer(&args, &client, k).await?;
    let unacknowledged = client
        .flush_settlements(client.config().settle_timeout)
        .await;
    if unacknowledged > 0 {
        eprintln!(
            "{unacknowledged} provider(s) did not acknowledge the countersigned receipt; it is stored here"
        );
    }
    Ok(code)
}

async fn answer(args: &QueryArgs, client: &MarketClient, k: usize) -> anyhow::Result<ExitCode> {
    let code = match args.task {
        Task::Embed => {
            let model = args
                .model
                .clone()
                .unwrap_or_else(|| agora_inference::model_cache::MINILM.to_string());
            let input = EmbedInput {
                texts: args.inputs.clone(),
            };
            let r = client
                .embed_redundant(&model, &input, k)
                .await
                .map_err(explain)?;
            print_failures(&r.failures);
            print_embeddings(args, &r.answers, &r.agreement);
            exit_for(&r.agreement, k, r.answers.len())
        }
        Task::Generate => {
            let model = args
                .model
                .clone()
                .unwrap_or_else(|| agora_inference::model_cache::SMOLLM2.to_string());
            if args.inputs.len() != 1 {
                bail!("--task generate takes one --input (the user message)");
            }
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage {
                    role: "system".into(),
                    content: system.clone(),
                });
            }
            messages.extend(args.inputs.iter().map(|text| ChatMessage {
                role: "user".into(),
                content: text.clone(),
            }));
            let sampling = if args.temperature > 0.0 {
                Sampling::Seeded {
                    temperature_milli: (args.temperature * 1000.0).round() as u32,
                    top_p_milli: 1000,
                    seed: args.seed,
                }
            } else {
                Sampling::Greedy
            };
            let input = GenerateInput {
                messages,
                max_tokens: args.max_tokens,
                sampling,
                stop: Vec::new(),
            };
            let r = client
                .generate_redundant(&model, &input, k)
                .await
                .map_err(explain)?;
            print_failures(&r.failures);
            print_generations(args, &r.answers, &r.agreement);
            exit_for(&r.agreement, k, r.answers.len())
        }
    };
    Ok(code)
}

/// Exit 0 when every answer came and they agree; 3 when they disagree, 4 when fewer came than asked.
fn exit_for(agreement: &Agreement, asked: usize, got: usize) -> ExitCode {
    if !agreement.agrees() {
        ExitCode::from(3)
    } else if got < asked {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

/// Turns a market error into a message that says what the user can do.
fn explain(e: MarketError) -> anyhow::Error {
    match &e {
        MarketError::NoProvider { .. } => anyhow::anyhow!(
            "{e}: is a miner running (`agora serve`), and is --bootstrap the mesh it joined?"
        ),
        MarketError::AllFailed {
            last_refusal: Some(refusal),
            ..
        } if refusal.kind == agora_protocols::QueryErrorKind::OverBudget => {
            anyhow::anyhow!(
                "{e}\nthe provider refused on price or credit: {}",
                refusal.message
            )
        }
        _ => anyhow::anyhow!(e),
    }
}

/// Copies of a redundant query that got no answer, on stderr (stdout stays the answer).
fn print_failures(failures: &[MarketError]) {
    for failure in failures {
        eprintln!("one of the redundant copies failed: {failure}");
    }
}

fn receipt_json<T>(s: &Settled<T>) -> serde_json::Value {
    json!({
        "provider": s.provider.to_string(),
        "receipt": s.receipt.id().to_string(),
        "price": s.receipt.body().price,
        "latency_ms": s.latency.as_millis() as u64,
        "failovers": s.failed_attempts.iter().map(|a| json!({
            "provider": a.provider.to_string(), "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

fn agreement_json(agreement: &Agreement) -> serde_json::Value {
    match agreement {
        Agreement::Single => json!({"compared": false, "agree": true}),
        Agreement::Cosine { min, agree } => {
            json!({"compared": true, "agree": agree, "min_cosine": min})
        }
        Agreement::Tokens { matching, of } => {
            json!({"compared": true, "agree": matching == of, "matching": matching, "of": of})
        }
    }
}

fn print_embeddings(args: &QueryArgs, answers: &[Settled<EmbedOutput>], agreement: &Agreement) {
    if args.json {
        let rows: Vec<_> = answers
            .iter()
            .map(|s| {
                let mut row = receipt_json(s);
                row["dimension"] = json!(s.output.dimension);
                row["embeddings"] = json!(s.output.vectors);
                row
            })
            .collect();
        println!(
            "{}",
            json!({"task": "embed", "answers": rows, "agreement": agreement_json(agreement)})
        );
        return;
    }
    for s in answers {
        print_receipt_line(s);
        for (text, vector) in args.inputs.iter().zip(&s.output.vectors) {
            println!(
                "  {:<40} [{}] ({} dims)",
                super::truncate(text, 40),
                vector
                    .iter()
                    .take(4)
                    .map(|x| format!("{x:+.4}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                vector.len()
            );
        }
    }
    print_agreement(agreement);
}

fn print_generations(args: &QueryArgs, answers: &[Settled<GenerateOutput>], agreement: &Agreement) {
    if args.json {
        let rows: Vec<_> = answers
            .iter()
            .map(|s| {
                let mut row = receipt_json(s);
                row["text"] = json!(s.output.text);
                row["tokens"] = json!(s.output.token_ids.len());
                row["finish"] = json!(s.output.finish.openai_reason());
                row
            })
            .collect();
        println!(
            "{}",
            json!({"task": "generate", "answers": rows, "agreement": agreement_json(agreement)})
        );
        return;
    }
    for s in answers {
        print_receipt_line(s);
        println!("  {}", s.output.text.trim());
    }
    print_agreement(agreement);
}

fn print_receipt_line<T>(s: &Settled<T>) {
    for failed in &s.failed_attempts {
        println!(
            "failed over from {}: {}",
            short_peer(&failed.provider),
            failed.error
        );
    }
    println!(
        "provider {}  latency {} ms  price {}  receipt {}",
        short_peer(&s.provider),
        s.latency.as_millis(),
        s.receipt.body().price,
        s.receipt.id().short(),
    );
}

fn print_agreement(agreement: &Agreement) {
    match agreement {
        Agreement::Single => {}
        Agreement::Cosine { min, agree } => println!(
            "redundant answers {}: lowest cosine {min:.6}",
            if *agree { "agree" } else { "DISAGREE" }
        ),
        Agreement::Tokens { matching, of } => println!(
            "redundant answers {}: {matching} of {of} have the same tokens",
            if matching == of { "agree" } else { "DISAGREE" }
        ),
    }
}
