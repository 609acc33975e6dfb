//! `agora receipts`: read the local receipt store: list, show one, verify all.
//!
//! The store and the balance arithmetic live in `agora_ledger::{store, balances}`; this file only
//! opens the file, formats rows and maps findings to exit codes. Human output is a table on stdout;
//! `--json` writes JSON instead (one object per line for `list`).
//!
//! The store file is locked by the process that has it open: run these commands while the node
//! that writes the store is stopped, or on a copy of the file.

use agora_ledger::balances::{self, Balances, Genesis, format_units};
use agora_ledger::store::{ListFilter, MAX_LIST_LIMIT, ReceiptStore, StoredReceipt, StoredRow};
use agora_protocols::{ContentId, PublicKey};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ReceiptsCommand {
    /// List stored receipts, newest first.
    List(ListArgs),
    /// Show one receipt in full, by id (64 hex digits, or a unique prefix of at least 8).
    Show(ShowArgs),
    /// Re-verify every stored receipt's signatures and the kept unpaid totals, and recompute
    /// balances from the countersigned receipts. Exits 1 if anything fails.
    Verify(VerifyArgs),
    /// Print the inclusion proof of an anchored receipt (text form: JSON with the compact proof
    /// in hex), for `agora anchor verify` or anyone holding the journal or reading the chain.
    Prove(ProveArgs),
}

/// Where the receipt store is.
#[derive(Debug, Args)]
pub struct StorePath {
    /// The receipt store [default: ~/.agora/receipts.redb].
    #[arg(
        long,
        visible_alias = "receipts",
        env = "AGORA_RECEIPTS",
        value_name = "PATH"
    )]
    pub store: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StorePath,
    /// Only receipts where this key (hex) is the client or the provider.
    #[arg(long, value_name = "HEX")]
    pub party: Option<String>,
    /// Only receipts not yet settled.
    #[arg(long)]
    pub unsettled: bool,
    /// At most this many.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
    /// One JSON object per receipt, one per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The receipt id.
    pub id: String,
    #[command(flatten)]
    pub store: StorePath,
    /// As one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StorePath,
    /// Genesis allocation file ({"accounts": {"<hex>": units}}): print balances from it.
    #[arg(long, value_name = "PATH")]
    pub genesis: Option<PathBuf>,
    /// The report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    /// The receipt id (64 hex digits, or a unique prefix of at least 8).
    pub id: String,
    #[command(flatten)]
    pub store: StorePath,
    #[command(flatten)]
    pub journal: super::anchor::JournalPath,
}

pub fn run(cmd: ReceiptsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReceiptsCommand::List(args) => list(&args),
        ReceiptsCommand::Show(args) => show(&args),
        ReceiptsCommand::Verify(args) => verify(&args),
        ReceiptsCommand::Prove(args) => prove(&args),
    }
}

fn prove(args: &ProveArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let id = find(&store, &args.id)?.receipt.id();
    let journal = args.journal.open_read_only()?;
    let proof = agora_ledger::anchor::prove(&store, &journal, &id)?;
    println!("{}", proof.to_text()?);
    Ok(ExitCode::SUCCESS)
}

impl StorePath {
    fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.store {
            Some(path) => Ok(path.clone()),
            None => dirs::home_dir()
                .map(|home| home.join(".agora").join("receipts.redb"))
                .context("no home directory: pass --store or set AGORA_RECEIPTS"),
        }
    }

    /// Opens an existing store. A missing file is an error here, not a new empty store.
    fn open(&self) -> anyhow::Result<ReceiptStore> {
        let path = self.path()?;
        if !path.exists() {
            bail!(
                "no receipt store at {} (a node creates it when it stores its first receipt)",
                path.display()
            );
        }
        Ok(ReceiptStore::open(&path)?)
    }
}

fn short_key(key: &PublicKey) -> String {
    key.to_hex().chars().take(8).collect()
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn row_json(row: &StoredRow) -> Value {
    let r = &row.receipt;
    let b = r.body();
    json!({
        "id": r.id().to_hex(),
        "countersigned": r.is_countersigned(),
        "settled": row.settled,
        "seq": row.seq,
        "version": b.version,
        "query_id": b.query_id.to_hex(),
        "subnet": b.subnet,
        "task": b.task.as_str(),
        "model": b.model,
        "input_hash": b.input_hash.to_hex(),
        "output_hash": b.output_hash.to_hex(),
        "price": b.price,
        "price_tokens": format_units(b.price),
        "client": b.client.to_hex(),
        "provider": b.provider.to_hex(),
        "nonce": b.nonce,
        "requested_at_ms": b.requested_at_ms,
        "answered_at_ms": b.answered_at_ms,
    })
}

fn receipt_bytes(r: &StoredReceipt) -> anyhow::Result<Vec<u8>> {
    Ok(match r {
        StoredReceipt::Half(h) => h.to_bytes()?,
        StoredReceipt::Full(f) => f.to_bytes()?,
    })
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let party = args
        .party
        .as_deref()
        .map(PublicKey::from_hex)
        .transpose()
        .context("--party must be a public key in hex (64 digits)")?;
    if args.limit > MAX_LIST_LIMIT {
        bail!("--limit is at most {MAX_LIST_LIMIT}");
    }
    let store = args.store.open()?;
    let rows = store.list_rows(&ListFilter {
        party,
        only_unsettled: args.unsettled,
        limit: args.limit,
    })?;
    if args.json {
        for row in &rows {
            println!("{}", row_json(row));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<8}  {:<8}  {:<24}  {:>21}  {:<8}  {:<8}  {:<13}  settled",
        "id", "task", "model", "price", "client", "provider", "countersigned"
    );
    for row in &rows {
        let b = row.receipt.body();
        let model: String = b.model.chars().take(24).collect();
        println!(
            "{:<8}  {:<8}  {:<24}  {:>21}  {:<8}  {:<8}  {:<13}  {}",
            row.receipt.id().short(),
            b.task.as_str(),
            model,
            format_units(b.price),
            short_key(&b.client),
            short_key(&b.provider),
            yes_no(row.receipt.is_countersigned()),
            yes_no(row.settled)
        );
    }
    eprintln!(
        "{} shown of {} stored",
        rows.len(),
        store.count().context("counting receipts")?
    );
    Ok(ExitCode::SUCCESS)
}

/// Finds one receipt by full id, or by a hex prefix that matches exactly one stored id.
fn find(store: &ReceiptStore, id: &str) -> anyhow::Result<StoredRow> {
    let id = id.trim().to_ascii_lowercase();
    if id.len() == 64 {
        let id = ContentId::from_hex(&id).context("a receipt id is 64 hex digits")?;
        return store
            .get_row(&id)?
            .with_context(|| format!("no receipt {id} in the store"));
    }
    if id.len() < 8 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
        bail!("a receipt id is 64 hex digits, or a unique prefix of at least 8");
    }
    let audit = store.audit()?;
    let mut matches = audit
        .good
        .into_iter()
        .filter(|row| row.receipt.id().to_hex().starts_with(&id));
    let Some(first) = matches.next() else {
        bail!("no receipt with an id starting {id}");
    };
    if matches.next().is_some() {
        bail!("more than one receipt id starts with {id}: give more digits");
    }
    Ok(first)
}

fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let row = find(&store, &args.id)?;
    let bytes = receipt_bytes(&row.receipt)?;
    let mut value = row_json(&row);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("receipt_hex".into(), Value::String(hex::encode(&bytes)));
        if let StoredReceipt::Full(r) = &row.receipt {
            obj.insert(
                "provider_signature".into(),
                Value::String(r.provider_signature().to_hex()),
            );
            obj.insert(
                "client_signature".into(),
                Value::String(r.client_signature().to_hex()),
            );
        }
    }
    if args.json {
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(obj) = value.as_object() {
        for (k, v) in obj {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{k:<20} {text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let genesis = args
        .genesis
        .as_deref()
        .map(Genesis::load)
        .transpose()
        .context("loading the genesis file")?;
    let store = args.store.open()?;
    let audit = store.audit()?;
    let full: Vec<_> = audit
        .good
        .iter()
        .filter_map(|row| row.receipt.as_receipt())
        .collect();
    let halves = audit.good.len().saturating_sub(full.len());
    let mut ok = audit.is_clean();

    let flows = balances::flows(full.iter().copied())?;
    let computed = genesis
        .as_ref()
        .map(|g| Balances::compute(g, full.iter().copied()));
    let balance_error = match &computed {
        Some(Err(e)) => {
            ok = false;
            Some(e.to_string())
        }
        _ => None,
    };

    if args.json {
        let bad: Vec<Value> = audit
            .bad
            .iter()
            .map(|(id, e)| json!({"id": id, "error": e.to_string()}))
            .collect();
        let mismatches: Vec<Value> = audit
            .unpaid_mismatches
            .iter()
            .map(|(c, p, kept, recomputed)| {
                json!({"client": c.to_hex(), "provider": p.to_hex(), "kept": kept, "recomputed": recomputed})
            })
            .collect();
        let flows_json: Vec<Value> = flows
            .iter()
            .map(|(k, f)| json!({"key": k.to_hex(), "paid": f.paid, "received": f.received}))
            .collect();
        let balances_json = match &computed {
            Some(Ok(b)) => Value::Array(
                b.iter()
                    .map(|(k, a)| {
                        json!({"key": k.to_hex(), "genesis": a.genesis, "paid": a.paid,
                               "received": a.received, "balance": a.balance})
                    })
                    .collect(),
            ),
            _ => Value::Null,
        };
        let report = json!({
            "ok": ok,
            "receipts": audit.good.len() + audit.bad.len(),
            "verified": audit.good.len(),
            "countersigned": full.len(),
            "halves": halves,
            "bad": bad,
            "unpaid_mismatches": mismatches,
            "flows": flows_json,
            "balances": balances_json,
            "balance_error": balance_error,
        });
        println!("{report}");
    } else {
        println!(
            "{} receipts: {} verified ({} countersigned, {} provider halves), {} failed",
            audit.good.len() + audit.bad.len(),
            audit.good.len(),
            full.len(),
            halves,
            audit.bad.len()
        );
        for (id, e) in &audit.bad {
            println!("FAIL {id}: {e}");
        }
        for (c, p, kept, recomputed) in &audit.unpaid_mismatches {
            println!(
                "FAIL unpaid total {} -> {}: kept {}, receipts add up to {}",
                short_key(c),
                short_key(p),
                format_units(*kept),
                format_units(*recomputed)
            );
        }
        match &computed {
            Some(Ok(b)) => {
                println!();
                println!(
                    "{:<64}  {:>21}  {:>21}  {:>21}  {:>21}",
                    "key", "genesis", "paid", "received", "balance"
                );
                for (k, a) in b.iter() {
                    println!(
                        "{:<64}  {:>21}  {:>21}  {:>21}  {:>21}",
                        k.to_hex(),
                        format_units(a.genesis),
                        format_units(a.paid),
                        format_units(a.received),
                        format_units(a.balance)
                    );
                }
            }
            Some(Err(e)) => println!("FAIL balances: {e}"),
            None => {
                println!();
                println!("{:<64}  {:>21}  {:>21}", "key", "paid", "received");
                for (k, f) in &flows {
                    println!(
                        "{:<64}  {:>21}  {:>21}",
                        k.to_hex(),
                        format_units(f.paid),
                        format_units(f.received)
                    );
                }
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
