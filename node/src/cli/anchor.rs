//! `agora anchor`: settle an epoch into a signed anchor record in the local journal, list and show
//! the journal, and verify inclusion proofs against it.
//!
//! The fold, the record, the journal and the proofs live in `agora_ledger::anchor`; this file only
//! opens the files (receipt store, ledger log and genesis, journal, wallet), prints, and maps the
//! outcome of `verify` to its exit status (0 valid, 1 invalid).

use super::ledger::LedgerPaths;
use super::node::KeyArgs;
use agora_ledger::anchor::{
    InclusionProof, Journal, SettleError, SignedAnchor, epoch_window, replay_to, settle,
};
use agora_ledger::log::{LocalLog, TxLog};
use agora_ledger::state::LedgerGenesis;
use agora_ledger::store::ReceiptStore;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AnchorCommand {
    /// Fold a subnet's epoch (new countersigned receipts, weight reveals, consensus result) into
    /// an anchor record signed by the wallet's hotkey, and append it to the journal. Settling an
    /// epoch again prints the record already journaled.
    Settle(SettleArgs),
    /// List the journal's records.
    List(ListArgs),
    /// Show one record of the journal: by its hash (64 hex digits) or by SUBNET/EPOCH.
    Show(ShowArgs),
    /// Verify an inclusion proof (from `agora receipts prove`) against the journal: exit status 0
    /// if valid, 1 if not, with the reason.
    Verify(VerifyArgs),
}

/// Where the anchor journal is.
#[derive(Debug, Args)]
pub struct JournalPath {
    /// The anchor journal [default: ~/.agora/anchors.journal].
    #[arg(long, env = "AGORA_JOURNAL", value_name = "PATH")]
    pub journal: Option<PathBuf>,
}

impl JournalPath {
    pub(crate) fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.journal {
            Some(path) => Ok(path.clone()),
            None => dirs::home_dir()
                .map(|home| home.join(".agora").join("anchors.journal"))
                .context("no home directory: pass --journal or set AGORA_JOURNAL"),
        }
    }

    /// Opens an existing journal to read (no lock: a running settle may be appending).
    pub(crate) fn open_read_only(&self) -> anyhow::Result<Journal> {
        let path = self.path()?;
        if !path.exists() {
            bail!(
                "no anchor journal at {} (`agora anchor settle` creates it)",
                path.display()
            );
        }
        let journal = Journal::open_read_only(&path)
            .with_context(|| format!("reading the anchor journal {}", path.display()))?;
        if let Some(torn) = journal.torn_tail() {
            eprintln!(
                "note: the journal ends in {torn} bytes of an unfinished record, ignored \
                 (the next settle cuts them off)"
            );
        }
        Ok(journal)
    }
}

#[derive(Debug, Args)]
pub struct SettleArgs {
    /// The subnet.
    #[arg(long, value_name = "N")]
    pub subnet: u16,
    /// The epoch index (the subnet's `epoch_index` of its blocks).
    #[arg(long, value_name = "E")]
    pub epoch: u64,
    /// The receipt store [default: ~/.agora/receipts.redb].
    #[arg(long, env = "AGORA_RECEIPTS", value_name = "PATH")]
    pub receipts: Option<PathBuf>,
    #[command(flatten)]
    pub journal: JournalPath,
    #[command(flatten)]
    pub ledger: LedgerPaths,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Print the record as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub journal: JournalPath,
    /// One JSON object per record, one per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The record's hash (64 hex digits), or SUBNET/EPOCH.
    pub record: String,
    /// With SUBNET/EPOCH: the anchorer's hotkey (hex), when the journal holds several anchorers.
    #[arg(long, value_name = "HEX")]
    pub anchorer: Option<String>,
    #[command(flatten)]
    pub journal: JournalPath,
    /// As one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The proof file (text form from `agora receipts prove`), or `-` for standard input.
    pub proof: String,
    #[command(flatten)]
    pub journal: JournalPath,
    /// With --chain-rpc, the anchor is looked up on chain (its event, checked against the
    /// contract's storage) instead of in a journal: nothing of the proof's maker is trusted.
    #[command(flatten)]
    pub chain: super::chain::ChainArgs,
}

pub fn run(cmd: AnchorCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AnchorCommand::Settle(args) => settle_cmd(&args),
        AnchorCommand::List(args) => list(&args),
        AnchorCommand::Show(args) => show(&args),
        AnchorCommand::Verify(args) => verify(&args),
    }
}

/// The receipt store path from the flag or the default.
pub(crate) fn receipts_path(flag: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(path) => Ok(path.clone()),
        None => dirs::home_dir()
            .map(|home| home.join(".agora").join("receipts.redb"))
            .context("no home directory: pass --receipts or set AGORA_RECEIPTS"),
    }
}

/// A record as JSON: every field, its hash, and the envelope's hex (what a chain event carries).
pub(crate) fn record_json(anchor: &SignedAnchor) -> Value {
    let r = anchor.record();
    json!({
        "hash": hex::encode(anchor.hash()),
        "version": r.version,
        "subnet": r.subnet,
        "epoch": r.epoch,
        "anchorer": r.anchorer.to_hex(),
        "receipts_root": hex::encode(r.receipts_root),
        "receipt_count": r.receipt_count,
        "total_paid": r.total_paid,
        "weights_root": hex::encode(r.weights_root),
        "consensus_root": hex::encode(r.consensus_root),
        "emission": r.emission,
        "prev_hash": hex::encode(r.prev_hash),
        "envelope": hex::encode(anchor.to_bytes()),
    })
}

fn print_record(value: &Value, json: bool) {
    if json {
        println!("{value}");
        return;
    }
    if let Some(obj) = value.as_object() {
        for (k, v) in obj {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{k:<16} {text}");
        }
    }
}

fn settle_cmd(args: &SettleArgs) -> anyhow::Result<ExitCode> {
    if args.key.ephemeral_key {
        bail!("an anchor is signed by the node's hotkey: give --wallet, not --ephemeral-key");
    }
    let key = args.key.load()?;
    // The state now, for the subnet's tempo; then the state just before the epoch's last block.
    let now = args.ledger.state()?;
    let window = epoch_window(&now, args.subnet, args.epoch)?;
    if now.height() < window.end_block {
        // Seal more blocks (or wait for the block clock) and settle again.
        return Err(SettleError::NotEnded {
            subnet: args.subnet,
            epoch: args.epoch,
            end_block: window.end_block,
            height: now.height(),
        }
        .into());
    }
    let genesis_path = args.ledger.genesis_path()?;
    let genesis = LedgerGenesis::load(&genesis_path)
        .with_context(|| format!("reading {}", genesis_path.display()))?
        .to_state();
    let log_path = args.ledger.log_path()?;
    let mut log = LocalLog::open_read_only(&log_path)
        .with_context(|| format!("opening the ledger log {}", log_path.display()))?;
    if log.height()? < window.end_block {
        bail!("the ledger log ends before block {}", window.end_block);
    }
    let before_end = replay_to(&mut log, genesis, window.end_block - 1)?;

    let store_path = receipts_path(&args.receipts)?;
    let store = ReceiptStore::open(&store_path)
        .with_context(|| format!("opening the receipt store {}", store_path.display()))?;
    let journal_path = args.journal.path()?;
    let mut journal = Journal::open(&journal_path)
        .with_context(|| format!("opening the anchor journal {}", journal_path.display()))?;
    if let Some(torn) = journal.recovered_tail() {
        eprintln!("note: cut {torn} bytes of an unfinished record off the end of the journal");
    }
    let done = settle(
        &store,
        &before_end,
        args.subnet,
        args.epoch,
        &key,
        &mut journal,
    )?;
    let mut value = record_json(&done.anchor);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("appended".into(), done.appended.into());
        obj.insert("journal".into(), journal_path.display().to_string().into());
    }
    print_record(&value, args.json);
    if !done.appended {
        eprintln!("already settled: this is the journaled record");
    }
    if args.ledger.chain.enabled() {
        anchor_on_chain(&args.ledger, &done.anchor)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Queues the anchor for the chain in the outbox beside the ledger mirror (durable at once) and
/// sends it; `agora chain follow` keeps sending whatever the RPC did not take yet.
fn anchor_on_chain(ledger: &LedgerPaths, anchor: &SignedAnchor) -> anyhow::Result<()> {
    use agora_ledger::chain::{ChainClient, Outbox};
    let outbox = Outbox::open(&super::chain::outbox_dir(&ledger.log_path()?))?;
    outbox.push(&super::settlement::anchor_submission(anchor))?;
    let config = ledger.chain.config()?;
    let signer = ledger
        .chain
        .signer()?
        .context("anchoring on chain needs --chain-key (or AGORA_CHAIN_KEY)")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let client = ChainClient::connect(config, Some(signer)).await?;
        anyhow::Ok(client.flush(&outbox).await?)
    });
    match report {
        Ok(report) if report.interrupted.is_none() && report.failed.is_empty() => {
            println!("anchor {} sent to the chain", hex::encode(anchor.hash()));
        }
        Ok(report) if !report.failed.is_empty() => {
            bail!("the chain refused the anchor: {}", report.failed[0].1);
        }
        Ok(report) => println!("anchor queued: {}", report.interrupted.unwrap_or_default()),
        Err(e) => println!("anchor queued: {e:#}"),
    }
    Ok(())
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let journal = args.journal.open_read_only()?;
    if !args.json {
        println!(
            "{:<6}  {:>8}  {:>10}  {:>9}  {:<8}  {:<16}",
            "subnet", "epoch", "receipts", "paid", "anchorer", "hash"
        );
    }
    for i in 0..journal.len() {
        let anchor = journal.read(i)?;
        if args.json {
            println!("{}", record_json(&anchor));
            continue;
        }
        let r = anchor.record();
        println!(
            "{:<6}  {:>8}  {:>10}  {:>9}  {:<8}  {:<16}",
            r.subnet,
            r.epoch,
            r.receipt_count,
            r.total_paid,
            r.anchorer.to_hex().chars().take(8).collect::<String>(),
            hex::encode(&anchor.hash()[..8])
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let journal = args.journal.open_read_only()?;
    let wanted = args.record.trim();
    let anchor = if let Some((subnet, epoch)) = wanted.split_once('/') {
        let subnet: u16 = subnet.parse().context("SUBNET/EPOCH: a subnet number")?;
        let epoch: u64 = epoch.parse().context("SUBNET/EPOCH: an epoch number")?;
        let anchorer = args
            .anchorer
            .as_deref()
            .map(agora_protocols::PublicKey::from_hex)
            .transpose()
            .context("--anchorer is a public key in hex")?;
        let matches: Vec<usize> = journal
            .entries()
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.subnet == subnet && e.epoch == epoch && anchorer.is_none_or(|a| a == e.anchorer)
            })
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [] => bail!("the journal has no record for subnet {subnet} epoch {epoch}"),
            [i] => journal.read(*i)?,
            _ => bail!("several anchorers settled subnet {subnet} epoch {epoch}: give --anchorer"),
        }
    } else {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(wanted, &mut hash)
            .context("a record is named by its hash (64 hex digits) or SUBNET/EPOCH")?;
        journal
            .find_hash(&hash)?
            .with_context(|| format!("no record {wanted} in the journal"))?
    };
    print_record(&record_json(&anchor), args.json);
    Ok(ExitCode::SUCCESS)
}

fn read_proof(source: &str) -> anyhow::Result<String> {
    let limit = agora_ledger::anchor::proof::MAX_PROOF_TEXT_LEN as u64 + 1;
    let mut text = String::new();
    if source == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_string(&mut text)
            .context("reading the proof from standard input")?;
    } else {
        std::fs::File::open(source)
            .with_context(|| format!("opening {source}"))?
            .take(limit)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {source}"))?;
    }
    Ok(text)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let text = read_proof(&args.proof)?;
    if args.chain.enabled() {
        return verify_on_chain(&args.chain, &text);
    }
    let journal = args.journal.open_read_only()?;
    let outcome = InclusionProof::from_text(&text)
        .and_then(|proof| proof.verify())
        .and_then(|ok| ok.verify_against_journal(&journal).map(|()| ok));
    match outcome {
        Ok(ok) => {
            print_valid(&ok, &format!("in {}", journal.path().display()));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("invalid: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Verifies a proof against the chain: the proof's own checks, then an `Anchored` event of the
/// same subnet and epoch whose record hash matches and which the contract's storage confirms.
fn verify_on_chain(chain: &super::chain::ChainArgs, text: &str) -> anyhow::Result<ExitCode> {
    use agora_ledger::chain::ChainClient;
    let ok = match InclusionProof::from_text(text).and_then(|proof| proof.verify()) {
        Ok(ok) => ok,
        Err(e) => {
            println!("invalid: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let r = ok.anchor.record();
    let config = chain.config()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let found = runtime.block_on(async {
        let client = ChainClient::connect(config, None).await?;
        anyhow::Ok(
            client
                .find_anchor(r.subnet, r.epoch, ok.anchor_hash())
                .await?,
        )
    })?;
    match found {
        Some(on_chain) => {
            print_valid(
                &ok,
                &format!(
                    "on chain in block {} from {:#x}",
                    on_chain.block, on_chain.anchorer
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            println!(
                "invalid: no anchor {} for subnet {} epoch {} on chain",
                hex::encode(ok.anchor_hash()),
                r.subnet,
                r.epoch
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The line `verify` prints for a valid proof; `place` says where the anchor was found.
fn print_valid(ok: &agora_ledger::anchor::VerifiedInclusion, place: &str) {
    let r = ok.anchor.record();
    println!(
        "valid: receipt {} (price {}) is leaf {} of subnet {} epoch {}, anchor {} by {}, {place}",
        ok.receipt.id(),
        ok.receipt.body().price,
        ok.leaf_index,
        r.subnet,
        r.epoch,
        hex::encode(ok.anchor_hash()),
        r.anchorer,
    );
}
