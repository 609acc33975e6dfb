//! `agora demo`: a whole marketplace on this machine, as separate processes on 127.0.0.1.
//!
//! It starts a local chain (anvil, with the AgoraLedger contract deployed) that orders the ledger,
//! an `agora-bootstrap` node, three miners (`agora serve --settle`: every one serves embeddings,
//! two serve generation too), a validator (`agora validate`) and a client peer (`agora gateway`,
//! the OpenAI-compatible front). Every one of them follows the contract into its own mirror of
//! the ledger, where the miners and the validator are registered by signed transactions sent
//! through the chain. The validator challenges the miners and publishes weights by commit and
//! reveal on chain; Yuma consensus turns them into the metagraph the demo prints. The wallets are
//! real encrypted key files, the client is funded by a genesis file, the miners find each other and
//! the client only through the bootstrap's DHT and gossip. The demo sends embedding and chat
//! requests to the client's gateway over HTTP and prints who answered, how fast, for how much and
//! under which receipt. At each epoch's end every miner folds its receipts into an anchor record
//! sent to the contract; the demo proves every receipt the client holds against those anchors,
//! reading only the chain, shows that all the mirrors agree on the ledger's state root, and prints
//! the balances the receipts imply, checked against the miners' own stores.

mod http;
mod ledger;
mod processes;

use agora_ledger::anchor::{InclusionProof, Journal, prove};
use agora_ledger::balances::{Balances, Genesis, UNITS_PER_TOKEN, format_units};
use agora_ledger::chain::anvil::DEV_KEYS;
use agora_ledger::log::{LocalLog, TxLog};
use agora_ledger::store::{ListFilter, ReceiptStore};
use agora_protocols::{PublicKey, Receipt, SecretKey};
use agora_wallet::{KdfParams, Overwrite, Password, Protection, Wallet, WordCount};
use anyhow::{Context, bail};
use clap::Args;
use processes::Proc;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long a child may take to start (models load on a busy 2-core machine).
const START_DEADLINE: Duration = Duration::from_secs(300);
/// Deadline of one request to the gateway.
const REQUEST_DEADLINE: Duration = Duration::from_secs(180);
/// What the client is funded with, in units of 1e-9.
const CLIENT_FUNDS: u64 = 100 * UNITS_PER_TOKEN;
/// Price of an embedding at the miners, in units of 1e-9.
const EMBED_PRICE: u64 = 2_000_000;
/// Price of a chat completion at the miners, in units of 1e-9.
const CHAT_PRICE: u64 = 50_000_000;
/// Tokens per chat completion.
const CHAT_TOKENS: u32 = 24;

/// Run the local showcase: bootstrap, three miners and a client as processes, real queries.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo's wallets, genesis and receipt stores; a fresh temporary folder when
    /// not given (and removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Sentences to embed (default: a built-in set).
    #[arg(long = "sentence")]
    pub sentences: Vec<String>,
    /// Prompts for chat completions (default: a built-in set).
    #[arg(long = "prompt")]
    pub prompts: Vec<String>,
    /// Print the children's log lines too.
    #[arg(long)]
    pub show_logs: bool,
}

/// A miner of the demo.
struct MinerSpec {
    name: &'static str,
    models: &'static [&'static str],
}

const MINERS: [MinerSpec; 3] = [
    MinerSpec {
        name: "miner-1",
        models: &[
            agora_inference::model_cache::MINILM,
            agora_inference::model_cache::SMOLLM2,
        ],
    },
    MinerSpec {
        name: "miner-2",
        models: &[agora_inference::model_cache::MINILM],
    },
    MinerSpec {
        name: "miner-3",
        models: &[
            agora_inference::model_cache::MINILM,
            agora_inference::model_cache::SMOLLM2,
        ],
    },
];

/// One answered request, for the table.
struct Row {
    task: &'static str,
    input: String,
    output: String,
    provider: String,
    latency: Duration,
    price: u64,
    receipt: String,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let temp;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = TempDir::new()?;
            temp.path().to_path_buf()
        }
    };
    let agora = std::env::current_exe().context("cannot find the agora binary")?;
    let bootstrap_bin = agora.with_file_name("agora-bootstrap");
    if !bootstrap_bin.exists() {
        bail!(
            "no agora-bootstrap beside {} (build it: cargo build -p agora-bootstrap, or run scripts/demo)",
            agora.display()
        );
    }
    println!(
        "Agora demo: a local chain, a bootstrap node, three miners, a validator and a client, as processes on 127.0.0.1."
    );
    println!("files in {}", dir.display());

    progress(
        "starting a local chain (anvil, a block every 0.5 s) and deploying the AgoraLedger contract",
    );
    let chain = ledger::Chain::start(&dir)?;
    println!(
        "  {} contract {} from block {} (final {} blocks deep)",
        chain.anvil.url(),
        chain.args.contract.as_deref().unwrap_or("?"),
        chain.args.start_block.unwrap_or(0),
        chain.args.depth.unwrap_or(0)
    );

    progress(
        "creating wallets (Argon2id-encrypted coldkeys, BIP-39 backups, hotkeys as identities)",
    );
    let client_key = create_wallet(&dir, "client")?.hot;
    let validator_keys = create_wallet(&dir, "validator")?;
    let mut miner_wallets = Vec::new();
    for miner in &MINERS {
        miner_wallets.push(create_wallet(&dir, miner.name)?);
    }
    let miner_keys: Vec<SecretKey> = miner_wallets.iter().map(|k| k.hot.clone()).collect();
    let genesis_path = dir.join("genesis.json");
    // Query payments come from hotkeys: the client's, and the validator's (its challenges are paid
    // queries like any other).
    let genesis = Genesis::new(BTreeMap::from([
        (client_key.public(), CLIENT_FUNDS),
        (validator_keys.hot.public(), CLIENT_FUNDS),
    ]))?;
    genesis.save(&genesis_path)?;
    println!(
        "  genesis: the client and the validator hold {} tokens each",
        format_units(CLIENT_FUNDS)
    );

    progress(&format!(
        "setting up the ledger on chain: subnet {} (epochs of 11 blocks), the miners and a validator registered, the validator staked",
        ledger::NETUID
    ));
    let miner_refs: Vec<&ledger::Keys> = miner_wallets.iter().collect();
    let mut ledger_files = ledger::set_up(&dir, &chain, &validator_keys, &miner_refs)?;
    println!(
        "  {} transactions final on chain; the ledger is at height {}",
        2 * (MINERS.len() + 1) + 1,
        ledger::state(&mut ledger_files)?.height()
    );
    // Every process follows the chain into its own mirror.
    let mirror = |name: &str| dir.join("ledger").join(name).join("ledger.log");
    let ledger_flags = |name: &str| chain.flags(&ledger_files.genesis, &mirror(name));

    progress("starting the bootstrap node");
    let mut bootstrap = Proc::start(
        "bootstrap",
        &bootstrap_bin,
        &strings(&[
            "--key-file",
            &dir.join("bootstrap.key").to_string_lossy(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
            "--loopback",
        ]),
        &[],
        args.show_logs,
    )?;
    let boot_addr = bootstrap.wait_for("its address", START_DEADLINE, false, |line| {
        line.contains("/p2p/").then(|| line.trim().to_string())
    })?;
    println!("  {boot_addr}");

    progress("starting three miners (agora serve --settle); each loads its models from the cache");
    let mut miners = Vec::new();
    for (index, miner) in MINERS.iter().enumerate() {
        let mut argv = strings(&[
            "serve",
            "--wallet",
            miner.name,
            "--wallet-path",
            &dir.to_string_lossy(),
            "--loopback",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &boot_addr,
            "--genesis",
            &genesis_path.to_string_lossy(),
            "--receipts",
            &dir.join(format!("{}.redb", miner.name)).to_string_lossy(),
            "--settle",
            "--journal",
            &journal(&dir, miner.name).to_string_lossy(),
        ]);
        argv.extend(ledger_flags(miner.name));
        for model in miner.models {
            let price = if *model == agora_inference::model_cache::MINILM {
                EMBED_PRICE
            } else {
                CHAT_PRICE
            };
            argv.extend(strings(&[
                "--model",
                model,
                "--price",
                &format!("{model}={price}"),
            ]));
        }
        // Each node pays its own gas: an anvil development account per process.
        let env = [("AGORA_CHAIN_KEY", DEV_KEYS[2 + index])];
        miners.push(Proc::start(
            miner.name,
            &agora,
            &argv,
            &env,
            args.show_logs,
        )?);
    }
    let mut miner_peers = Vec::new();
    for miner in &mut miners {
        let peer = miner.wait_for("its peer id", START_DEADLINE, true, |line| {
            line.strip_prefix("peer ").map(str::to_string)
        })?;
        miner.wait_for("ready", START_DEADLINE, true, |line| {
            (line.trim() == "ready").then_some(())
        })?;
        miner_peers.push(peer);
    }

    progress(
        "starting the validator (agora validate): it challenges every miner and publishes weights",
    );
    let mut validator_args = strings(&[
        "validate",
        "--wallet",
        "validator",
        "--wallet-path",
        &dir.to_string_lossy(),
        "--loopback",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bootstrap",
        &boot_addr,
        "--subnet",
        &ledger::NETUID.to_string(),
        "--receipts",
        &dir.join("validator.redb").to_string_lossy(),
        "--state-dir",
        &dir.join("validator-state").to_string_lossy(),
        "--round-interval-ms",
        "1000",
    ]);
    validator_args.extend(ledger_flags("validator"));
    let mut validator = Proc::start(
        "validator",
        &agora,
        &validator_args,
        &[("AGORA_CHAIN_KEY", DEV_KEYS[1])],
        args.show_logs,
    )?;

    progress("starting the client peer with its OpenAI-compatible gateway (agora gateway)");
    let client_store = dir.join("client.redb");
    let mut gateway_args = strings(&[
        "gateway",
        "--wallet",
        "client",
        "--wallet-path",
        &dir.to_string_lossy(),
        "--loopback",
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        &boot_addr,
        "--receipts",
        &client_store.to_string_lossy(),
    ]);
    gateway_args.extend(ledger_flags("client"));
    let mut gateway = Proc::start("client", &agora, &gateway_args, &[], args.show_logs)?;
    let base: SocketAddr = gateway.wait_for("its address", START_DEADLINE, true, |line| {
        line.strip_prefix("gateway http://")
            .and_then(|rest| rest.trim_end_matches("/v1").parse().ok())
    })?;
    gateway.wait_for("ready", START_DEADLINE, false, |line| {
        (line.trim() == "ready").then_some(())
    })?;

    progress("waiting for the client to learn both models from the miners' signed adverts");
    let wait_end = Instant::now() + START_DEADLINE;
    loop {
        let models = http::request(base, "GET", "/v1/models", None, REQUEST_DEADLINE)?.json()?;
        let ids: Vec<&str> = models["data"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["id"].as_str()).collect())
            .unwrap_or_default();
        if ids.contains(&agora_inference::model_cache::MINILM)
            && ids.contains(&agora_inference::model_cache::SMOLLM2)
        {
            println!("  GET /v1/models: {}", ids.join(", "));
            break;
        }
        if Instant::now() > wait_end {
            bail!("the client never learned both models (it knows {ids:?})");
        }
        std::thread::sleep(Duration::from_millis(300));
    }

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
    progress(&format!(
        "sending {} embedding and {} chat requests to the gateway (each one a paid query on the mesh)",
        sentences.len(),
        prompts.len()
    ));
    let mut rows = Vec::new();
    for sentence in &sentences {
        rows.push(embed(base, sentence)?);
    }
    for prompt in &prompts {
        rows.push(chat(base, prompt)?);
    }
    print_table(&rows);

    progress("waiting for the validator's weights to be revealed and an epoch to score the miners");
    let revealed = validator.wait_for("a reveal of its weights", START_DEADLINE, true, |line| {
        line.strip_prefix("revealed weights on subnet ")
            .and_then(|rest| rest.split(" at block ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|h| h.parse::<u64>().ok())
    })?;
    let scored_end = Instant::now() + START_DEADLINE;
    let graph = loop {
        let graph = ledger::metagraph(&mut ledger_files)?;
        let miners_scored = graph
            .iter()
            .filter(|r| r.hotkey != validator_keys.hot.public().to_hex())
            .all(|r| r.incentive_u16 > 0);
        let height = ledger::state(&mut ledger_files)?.height();
        if miners_scored && height > revealed {
            break graph;
        }
        if Instant::now() > scored_end {
            bail!("the miners were not scored within {START_DEADLINE:?} of the reveal");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    print_metagraph(&graph, &validator_keys, &MINERS, &miner_keys);
    validator.stop(Duration::from_secs(10));
    // The client delivers every countersignature before it exits.
    gateway.stop(Duration::from_secs(10));

    progress(
        "waiting for each miner to settle an epoch that ends after the last query, and for its anchor to be final on chain",
    );
    let stopped_at = ledger::state(&mut ledger_files)?;
    let after = stopped_at
        .subnet(ledger::NETUID)
        .map(|s| s.epoch_index(stopped_at.height()))
        .unwrap_or(0)
        + 2;
    for miner in &mut miners {
        let (epoch, hash) = miner.wait_for(
            "the settlement of a later epoch",
            START_DEADLINE,
            false,
            |line| settled_line(line).filter(|(epoch, _)| *epoch >= after),
        )?;
        ledger_files.wait_for_anchor(ledger::NETUID, epoch, hash, START_DEADLINE)?;
        println!(
            "  {}: epoch {epoch} anchored on chain, record {}",
            miner.name,
            short(&hex::encode(hash))
        );
    }
    for miner in &mut miners {
        miner.stop(Duration::from_secs(10));
    }

    progress("reading the receipt stores");
    let client_receipts = countersigned(&client_store)?;
    if client_receipts.len() != rows.len() {
        bail!(
            "the client stored {} receipts for {} answers",
            client_receipts.len(),
            rows.len()
        );
    }
    let mut held_by_miners = 0;
    for (miner, key) in MINERS.iter().zip(&miner_keys) {
        let theirs = countersigned(&dir.join(format!("{}.redb", miner.name)))?;
        for receipt in &theirs {
            if receipt.body().provider != key.public() {
                bail!("{} holds a receipt of another provider", miner.name);
            }
        }
        held_by_miners += theirs
            .iter()
            .filter(|r| client_receipts.iter().any(|c| c.id() == r.id()))
            .count();
    }
    println!(
        "  the client holds {} receipts signed by both sides; the miners hold {} of them, countersigned",
        client_receipts.len(),
        held_by_miners
    );

    progress("proving every receipt the client holds against the anchors on chain");
    let mut proven = 0;
    let mut proof_bytes = 0;
    for (miner, key) in MINERS.iter().zip(&miner_keys) {
        let store = ReceiptStore::open(&dir.join(format!("{}.redb", miner.name)))?;
        let journal = Journal::open_read_only(&journal(&dir, miner.name))?;
        for receipt in client_receipts
            .iter()
            .filter(|r| r.body().provider == key.public())
        {
            // What a client would receive from the miner, checked with nothing but the chain.
            let text = prove(&store, &journal, &receipt.id())?.to_text()?;
            proof_bytes = proof_bytes.max(text.len());
            let ok = InclusionProof::from_text(&text)?.verify()?;
            let r = ok.anchor.record();
            let on_chain = ledger_files.find_anchor(r.subnet, r.epoch, ok.anchor_hash())?;
            if on_chain.is_none() {
                bail!(
                    "receipt {} proves against anchor {} of epoch {}, which is not on chain",
                    receipt.id(),
                    hex::encode(ok.anchor_hash()),
                    r.epoch
                );
            }
            proven += 1;
        }
    }
    println!(
        "  {proven} of {} receipts proven: each a Merkle path to an anchor record the contract holds (proofs up to {proof_bytes} bytes of text)",
        client_receipts.len()
    );
    if proven != client_receipts.len() {
        bail!(
            "{} receipts could not be proven",
            client_receipts.len() - proven
        );
    }

    progress("comparing the ledger state every process mirrored from the chain");
    let mut mirrors = vec![("demo".to_string(), ledger_files.log.clone())];
    for name in MINERS.iter().map(|m| m.name).chain(["validator", "client"]) {
        mirrors.push((name.to_string(), mirror(name)));
    }
    // Bring each up to the chain's final blocks (the processes are stopped), then compare them
    // at the height all reached.
    let mut common = u64::MAX;
    for (_, path) in &mirrors {
        super::chain::sync_mirror(&chain.args, path)?;
        common = common.min(LocalLog::open_read_only(path)?.height()?);
    }
    let mut roots = BTreeMap::new();
    for (name, path) in &mirrors {
        let root =
            ledger::replay_mirror(&ledger_files.genesis, path, Some(common))?.state_root_hex()?;
        roots
            .entry(root)
            .or_insert_with(Vec::new)
            .push(name.clone());
    }
    if roots.len() != 1 {
        bail!("the mirrors disagree at height {common}: {roots:?}");
    }
    println!(
        "  {} mirrors, each followed independently, agree at height {common}: state root {}",
        mirrors.len(),
        roots.keys().next().map(String::as_str).unwrap_or("?")
    );

    let balances = Balances::compute(&genesis, client_receipts.iter())?;
    println!();
    println!(
        "Balances after the run (tokens; 1 unit = 1e-9), recomputed from genesis and receipts:"
    );
    print_balance("client", &client_key.public(), &balances);
    for (miner, key) in MINERS.iter().zip(&miner_keys) {
        print_balance(miner.name, &key.public(), &balances);
    }
    println!();
    for (miner, peer) in MINERS.iter().zip(&miner_peers) {
        println!(
            "  {} is {} ({})",
            miner.name,
            short(peer),
            miner.models.join(", ")
        );
    }
    println!(
        "done in {:.1} s: {} queries answered, paid and receipted by both sides",
        started.elapsed().as_secs_f64(),
        rows.len()
    );
    drop(bootstrap);
    Ok(ExitCode::SUCCESS)
}

/// A miner's anchor journal.
fn journal(dir: &Path, miner: &str) -> PathBuf {
    dir.join("anchors").join(format!("{miner}.journal"))
}

/// Parses a miner's `settled epoch E of subnet S: ... anchor HASH ...` line.
fn settled_line(line: &str) -> Option<(u64, [u8; 32])> {
    let rest = line.strip_prefix("settled epoch ")?;
    let epoch = rest.split(' ').next()?.parse().ok()?;
    let hash = rest.split(" anchor ").nth(1)?.split(' ').next()?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hash, &mut out).ok()?;
    Some((epoch, out))
}

fn progress(step: &str) {
    println!("-> {step}");
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn short(text: &str) -> String {
    let tail: Vec<char> = text.chars().rev().take(8).collect();
    format!("…{}", tail.into_iter().rev().collect::<String>())
}

/// Creates a wallet with an encrypted coldkey and a plaintext hotkey (a node loads it unattended),
/// and returns both keys.
fn create_wallet(root: &Path, name: &str) -> anyhow::Result<ledger::Keys> {
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
    Ok(ledger::Keys {
        cold: wallet.unlock_coldkey(&password)?,
        hot: wallet.unlock_hotkey("default", None)?,
    })
}

/// The subnet's metagraph, named.
fn print_metagraph(
    rows: &[agora_ledger::state::MetagraphRow],
    validator: &ledger::Keys,
    miners: &[MinerSpec],
    miner_keys: &[SecretKey],
) {
    let name = |hotkey: &str| {
        if hotkey == validator.hot.public().to_hex() {
            return "validator".to_string();
        }
        miners
            .iter()
            .zip(miner_keys)
            .find(|(_, k)| k.public().to_hex() == hotkey)
            .map(|(m, _)| m.name.to_string())
            .unwrap_or_else(|| short(hotkey))
    };
    let p = |x: u16| f64::from(x) / 65535.0;
    println!();
    println!(
        "Metagraph of subnet {} (Yuma consensus over the validator's revealed weights):",
        ledger::NETUID
    );
    println!(
        "  {:>3} {:<10} {:>14} {:>7} {:>7} {:>7} {:>7} {:>14} {:>6}",
        "uid", "neuron", "stake", "vtrust", "cons", "incent", "divs", "emission", "permit"
    );
    for r in rows {
        println!(
            "  {:>3} {:<10} {:>14} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>14} {:>6}",
            r.uid,
            name(&r.hotkey),
            format_units(r.stake),
            p(r.validator_trust_u16),
            p(r.consensus_u16),
            p(r.incentive_u16),
            p(r.dividends_u16),
            format_units(r.emission),
            r.validator_permit
        );
    }
}

/// The answer's provenance from the gateway's headers.
fn provenance(response: &http::Response) -> (String, u64, String) {
    (
        short(response.header("x-agora-provider").unwrap_or("?")),
        response
            .header("x-agora-price")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        response
            .header("x-agora-receipt")
            .unwrap_or("?")
            .chars()
            .take(12)
            .collect(),
    )
}

fn check_ok(response: &http::Response) -> anyhow::Result<serde_json::Value> {
    let body = response.json()?;
    if response.status != 200 {
        bail!(
            "the gateway answered {}: {}",
            response.status,
            body["error"]["message"].as_str().unwrap_or("?")
        );
    }
    Ok(body)
}

fn embed(base: SocketAddr, sentence: &str) -> anyhow::Result<Row> {
    let started = Instant::now();
    let response = http::request(
        base,
        "POST",
        "/v1/embeddings",
        Some(&json!({"model": agora_inference::model_cache::MINILM, "input": sentence})),
        REQUEST_DEADLINE,
    )?;
    let latency = started.elapsed();
    let body = check_ok(&response)?;
    let vector: Vec<f64> = body["data"][0]["embedding"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    let (provider, price, receipt) = provenance(&response);
    Ok(Row {
        task: "embed",
        input: sentence.to_string(),
        output: format!(
            "[{:+.3}, {:+.3}, {:+.3}, ...] ({} dims)",
            vector.first().copied().unwrap_or_default(),
            vector.get(1).copied().unwrap_or_default(),
            vector.get(2).copied().unwrap_or_default(),
            vector.len()
        ),
        provider,
        latency,
        price,
        receipt,
    })
}

fn chat(base: SocketAddr, prompt: &str) -> anyhow::Result<Row> {
    let started = Instant::now();
    let response = http::request(
        base,
        "POST",
        "/v1/chat/completions",
        Some(&json!({
            "model": agora_inference::model_cache::SMOLLM2,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": CHAT_TOKENS,
            "temperature": 0,
        })),
        REQUEST_DEADLINE,
    )?;
    let latency = started.elapsed();
    let body = check_ok(&response)?;
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let (provider, price, receipt) = provenance(&response);
    Ok(Row {
        task: "chat",
        input: prompt.to_string(),
        output: text,
        provider,
        latency,
        price,
        receipt,
    })
}

/// The countersigned receipts in a store.
fn countersigned(path: &Path) -> anyhow::Result<Vec<Receipt>> {
    let store = ReceiptStore::open(path)
        .with_context(|| format!("opening the receipt store {}", path.display()))?;
    Ok(store
        .list(&ListFilter {
            limit: agora_ledger::store::MAX_LIST_LIMIT,
            ..ListFilter::default()
        })?
        .iter()
        .filter_map(|r| r.as_receipt().cloned())
        .collect())
}

fn print_balance(name: &str, key: &PublicKey, balances: &Balances) {
    let account = balances.get(key);
    println!(
        "  {name:<8} {:>16}   (genesis {}, paid {}, received {})",
        format_units(account.balance),
        format_units(account.genesis),
        format_units(account.paid),
        format_units(account.received)
    );
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<3} {:<6} {:<34} {:<40} {:<10} {:>8} {:>11} {:<12}",
        "#", "task", "input", "output", "provider", "latency", "price", "receipt"
    );
    for (i, r) in rows.iter().enumerate() {
        println!(
            "{:<3} {:<6} {:<34} {:<40} {:<10} {:>6}ms {:>11} {:<12}",
            i + 1,
            r.task,
            crate::cli::truncate(&r.input, 34),
            crate::cli::truncate(&r.output, 40),
            r.provider,
            r.latency.as_millis(),
            r.price,
            r.receipt
        );
    }
    println!();
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
