//! `agora demo`: everything Agora can do today, on this machine, with real keys and real models.
//!
//! Until the marketplace wires models to the mesh, the client and the miner run in this one process and
//! hand each other the exact bytes they would send over the network: a signed query, an answer with the
//! miner's half of the receipt, the client's countersignature. Both sides check them with the same
//! functions a mesh node uses (`agora_overlay::query`). Nothing is simulated beyond the transport: the
//! wallets are real encrypted key files, the models run on the cached weights, every signature is
//! checked, and every receipt is proven against the batch's Merkle root.

use agora_inference::backend::DevicePreference;
use agora_inference::embedding::SentenceEmbedder;
use agora_inference::generation::{
    ChatMessage, GenerationParams, Generator, SamplingParams, default_model_path,
};
use agora_overlay::PeerId;
use agora_overlay::now_ms;
use agora_protocols::merkle::MerkleTree;
use agora_protocols::{
    ContentId, QueryRequest, QueryWireResponse, Receipt, SecretKey, Signed, Task,
};
use agora_wallet::{KdfParams, Overwrite, Password, Protection, Wallet, WordCount};
use anyhow::{Context, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Price of one embedding query in the demo, in units of 1e-9.
const EMBED_PRICE: u64 = 2_000_000;
/// Price of one generation query in the demo, in units of 1e-9.
const GENERATE_PRICE: u64 = 5_000_000;
/// Tokens generated per generation query.
const GENERATE_TOKENS: usize = 24;
/// Subnet the demo's queries run on.
const SUBNET: u16 = 1;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo's wallets; a fresh temporary folder when not given.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Sentences to embed (default: a built-in set).
    #[arg(long = "sentence")]
    pub sentences: Vec<String>,
    /// Prompts for text generation (default: a built-in set).
    #[arg(long = "prompt")]
    pub prompts: Vec<String>,
}

/// The miner's models.
struct Models {
    embedder: SentenceEmbedder,
    generator: Generator,
}

/// One settled query, for the table.
struct Settled {
    task: Task,
    input: String,
    output: String,
    latency: Duration,
    receipt: Receipt,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = TempDir::new()?;
            temp.path().to_path_buf()
        }
    };
    println!("Agora demo: a client and a miner, real keys, real models (the mesh comes next).");
    println!("wallets in {}", dir.display());

    progress("creating wallets (Argon2id-encrypted coldkeys, BIP-39 backups)");
    let client_key = create_wallet(&dir, "client")?;
    let miner_key = create_wallet(&dir, "miner")?;
    println!(
        "  client hotkey {}  peer id {}",
        short_key(&client_key),
        agora_wallet::peer_id(&client_key.public())?
    );
    println!(
        "  miner  hotkey {}  peer id {}",
        short_key(&miner_key),
        agora_wallet::peer_id(&miner_key.public())?
    );

    let client_peer = agora_wallet::peer_id(&client_key.public())?;
    let miner_peer = agora_wallet::peer_id(&miner_key.public())?;

    progress("loading all-minilm-l6-v2 from the model cache");
    let load_started = Instant::now();
    let embedder = SentenceEmbedder::load_default()
        .context("cannot load the embedding model (run scripts/setup first)")?;
    println!(
        "  loaded in {:.2} s on {}",
        load_started.elapsed().as_secs_f64(),
        embedder.device().name()
    );
    progress("loading smollm2-135m-instruct (GGUF, Q4_1) from the model cache");
    let load_started = Instant::now();
    let generator = Generator::load(&default_model_path(), DevicePreference::from_env())
        .context("cannot load the generation model (run scripts/setup first)")?;
    println!(
        "  loaded in {:.2} s on {}",
        load_started.elapsed().as_secs_f64(),
        generator.device()
    );
    let models = Models {
        embedder,
        generator,
    };

    let sentences = if args.sentences.is_empty() {
        default_sentences()
    } else {
        args.sentences.clone()
    };
    let prompts = if args.prompts.is_empty() {
        default_prompts()
    } else {
        args.prompts.clone()
    };
    let work: Vec<(Task, String)> = sentences
        .into_iter()
        .map(|s| (Task::Embed, s))
        .chain(prompts.into_iter().map(|p| (Task::Generate, p)))
        .collect();
    progress(&format!(
        "running {} queries (embeddings, then generation of {GENERATE_TOKENS} tokens each)",
        work.len()
    ));
    let mut settled = Vec::new();
    for (nonce, (task, text)) in work.iter().enumerate() {
        let query_started = Instant::now();
        let query = client_query(&client_key, *task, text, nonce as u64)?;
        let response = miner_answer(&miner_key, &client_peer, &query, &models)?;
        let (output, receipt) = client_settle(&client_key, &miner_peer, &query, response)?;
        settled.push(Settled {
            task: *task,
            input: text.clone(),
            output: describe_output(*task, &output)?,
            latency: query_started.elapsed(),
            receipt,
        });
    }

    print_table(&settled);

    progress("folding the receipts into a Merkle root and proving each one");
    let ids: Vec<[u8; 32]> = settled.iter().map(|s| s.receipt.id().0).collect();
    let tree = MerkleTree::new(ids.clone());
    for (index, id) in ids.iter().enumerate() {
        let proof = tree
            .prove(index)
            .context("a receipt of the batch has no proof")?;
        let bytes = proof.to_bytes()?;
        agora_protocols::MerkleProof::from_bytes(&bytes)?
            .verify(&tree.root(), id)
            .with_context(|| format!("receipt {index} does not prove against the root"))?;
    }
    println!(
        "  root {} over {} receipts; every inclusion proof verified",
        hex::encode(tree.root()),
        ids.len()
    );

    let paid: u64 = settled.iter().map(|s| s.receipt.body().price).sum();
    println!();
    println!("Balances from the receipts (units of 1e-9):");
    println!("  client {:>15}", -(paid as i128));
    println!("  miner  {:>15}", paid);
    println!();
    println!(
        "done in {:.1} s: {} queries, {} receipts signed by both sides and verified",
        started.elapsed().as_secs_f64(),
        settled.len(),
        settled.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn progress(step: &str) {
    println!("-> {step}");
}

fn short_key(key: &SecretKey) -> String {
    key.public().to_hex()[..16].to_string()
}

/// Creates a wallet with an encrypted coldkey and a plaintext hotkey (a node loads it unattended),
/// and returns the unlocked hotkey.
fn create_wallet(root: &Path, name: &str) -> anyhow::Result<SecretKey> {
    let wallet = Wallet::new(root, name)?;
    let mut secret = [0u8; 24];
    agora_protocols::keys::fill_random(&mut secret);
    let password = Password::from_string(hex::encode(secret));
    wallet.create_coldkey(
        WordCount::Twelve,
        &password,
        KdfParams::STRONG,
        Overwrite::Refuse,
    )?;
    wallet.create_hotkey(
        "default",
        WordCount::Twelve,
        Protection::Plaintext,
        Overwrite::Refuse,
    )?;
    Ok(wallet.unlock_hotkey("default", None)?)
}

fn model_and_price(task: Task) -> (&'static str, u64) {
    match task {
        Task::Embed => (agora_inference::model_cache::MINILM, EMBED_PRICE),
        Task::Generate => (agora_inference::model_cache::SMOLLM2, GENERATE_PRICE),
    }
}

/// The client signs a query; what travels is the envelope's bytes.
fn client_query(client: &SecretKey, task: Task, text: &str, nonce: u64) -> anyhow::Result<Vec<u8>> {
    let (model, max_price) = model_and_price(task);
    let sent_at_ms = now_ms();
    let request = QueryRequest {
        query_id: ContentId::derive(
            "agora 2026-11 demo query id",
            &[client.public().to_bytes().as_slice(), &nonce.to_le_bytes()].concat(),
        ),
        subnet: SUBNET,
        task,
        model: model.to_string(),
        input: text.as_bytes().to_vec(),
        max_price,
        nonce,
        sent_at_ms,
        deadline_ms: sent_at_ms + 30_000,
    };
    Ok(Signed::sign(request, client)?.to_bytes()?)
}

/// The miner checks the query exactly as a mesh node checks an inbound one (signature by the sending
/// peer, bounds, deadline), runs the model and signs its half of the receipt.
fn miner_answer(
    miner: &SecretKey,
    client_peer: &PeerId,
    query_bytes: &[u8],
    models: &Models,
) -> anyhow::Result<QueryWireResponse> {
    let query = agora_overlay::query::check_inbound_query(client_peer, query_bytes, now_ms())
        .map_err(|e| anyhow::anyhow!("miner refuses the query: {}", e.message))?;
    let request = query.value();
    let (model, price) = model_and_price(request.task);
    if request.model != model {
        bail!(
            "miner refuses the query: it does not serve {}",
            request.model
        );
    }
    if request.max_price < price {
        bail!("miner refuses the query: over budget");
    }
    let text = std::str::from_utf8(&request.input).context("query input is not UTF-8")?;
    let output: Vec<u8> = match request.task {
        Task::Embed => models
            .embedder
            .embed(text)?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        Task::Generate => {
            let prompt = models
                .generator
                .tokenizer()
                .apply_chat_template(&[ChatMessage::new("user", text)], true);
            let params = GenerationParams {
                max_tokens: GENERATE_TOKENS,
                sampling: SamplingParams::greedy(),
                ..GenerationParams::default()
            };
            models
                .generator
                .generate_text(&prompt, &params, |_| {})?
                .text
                .into_bytes()
        }
    };
    Ok(agora_overlay::answer(miner, &query, output, price))
}

/// The client checks the answer exactly as a mesh client does (the miner's signature, and that the
/// receipt names this query, this input and this output at no more than the maximum price), then
/// countersigns.
fn client_settle(
    client: &SecretKey,
    miner_peer: &PeerId,
    query_bytes: &[u8],
    response: QueryWireResponse,
) -> anyhow::Result<(Vec<u8>, Receipt)> {
    let query = Signed::<QueryRequest>::from_bytes(query_bytes)?;
    let answer = agora_overlay::check_answer(miner_peer, &query, response)?;
    let receipt = answer.receipt.countersign(client)?;
    // What each side would store: the bytes, checked again as a third party would.
    Ok((answer.output, Receipt::from_bytes(&receipt.to_bytes()?)?))
}

/// A short human reading of an answer, for the table.
fn describe_output(task: Task, output: &[u8]) -> anyhow::Result<String> {
    match task {
        Task::Embed => {
            if !output.len().is_multiple_of(4) {
                bail!("an embedding is a whole number of f32 values");
            }
            let values: Vec<f32> = output
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok(format!(
                "[{:+.3}, {:+.3}, {:+.3}, ...] ({} dims)",
                values.first().copied().unwrap_or_default(),
                values.get(1).copied().unwrap_or_default(),
                values.get(2).copied().unwrap_or_default(),
                values.len()
            ))
        }
        Task::Generate => Ok(String::from_utf8_lossy(output)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")),
    }
}

fn print_table(settled: &[Settled]) {
    println!();
    println!(
        "{:<3} {:<9} {:<40} {:<46} {:>9} {:>11} {:<10}",
        "#", "task", "input", "output", "latency", "price", "receipt"
    );
    for (i, s) in settled.iter().enumerate() {
        println!(
            "{:<3} {:<9} {:<40} {:<46} {:>7}ms {:>11} {:<10}",
            i + 1,
            s.task.as_str(),
            truncate(&s.input, 40),
            truncate(&s.output, 46),
            s.latency.as_millis(),
            s.receipt.body().price,
            s.receipt.id().short()
        );
    }
    println!();
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

fn default_sentences() -> Vec<String> {
    [
        "Peers find each other through a Kademlia DHT.",
        "A miner answers queries with real models.",
        "Every answer is settled by a receipt both sides sign.",
        "Receipts are folded into Merkle roots and anchored.",
        "Das ist ein Satz auf Deutsch.",
        "日本語の文もちゃんと埋め込めます。",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn default_prompts() -> Vec<String> {
    [
        "What is a peer-to-peer network? Answer in one sentence.",
        "Name three colours of the rainbow.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A temporary folder removed when dropped (the demo's wallets are throwaway keys).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let mut suffix = [0u8; 8];
        agora_protocols::keys::fill_random(&mut suffix);
        let path = std::env::temp_dir().join(format!("agora-demo-{}", hex::encode(suffix)));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
