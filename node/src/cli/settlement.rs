//! Epoch settlement inside `agora serve --settle`.
//!
//! At each end of the subnet's epoch the miner folds the epoch into one anchor record
//! (`agora_ledger::anchor`): its countersigned receipts not anchored before, the weight reveals
//! and the consensus result as Merkle roots, the receipt count, the total paid, the emission and
//! the previous anchor's hash. It appends the record to its hash-chained journal, marks those
//! receipts settled in its store (so a client's unpaid total at this miner falls and its credit
//! renews every epoch), and with a chain queues the record in the durable outbox and sends it.
//!
//! This runs inside `agora serve`, not as a separate `agora anchor settle`, because the receipt
//! store belongs to the serving process (redb opens a file once). It is a plain thread: ledger
//! replays and chain rounds block, and must never hold up answers.
//!
//! Only the latest ended epoch is settled. Epochs that ended while the miner was down lose
//! nothing: an anchor folds every countersigned receipt not anchored before.
//!
//! An epoch is settled from the ledger just before its last block. The settler keeps that state
//! as it follows the log ([`EpochSnapshots`]: a copy taken when it reaches the height, at most two
//! held), so settling costs the same at any chain age; replaying the log from genesis per epoch
//! would grow with the height. A restart replays from genesis anyway and keeps the states on the
//! way; the replay ([`replay_to`]) remains only for an epoch no state was kept for.

use super::chain::{ChainSession, is_fatal, outbox_dir};
use super::ledger::LedgerPaths;
use agora_ledger::anchor::settle::{EpochSnapshots, catch_up_keeping};
use agora_ledger::anchor::{Journal, SignedAnchor, epoch_window, replay_to, settle};
use agora_ledger::chain::{Outbox, Submission};
use agora_ledger::log::{GENESIS_PREV_HASH, LocalLog};
use agora_ledger::state::{LedgerGenesis, LedgerState};
use agora_ledger::store::ReceiptStore;
use agora_protocols::SecretKey;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the settler looks at the ledger.
const POLL: Duration = Duration::from_millis(500);

/// Ledger states kept to settle from: the latest ended epoch's, and the next one's when a
/// catch-up stops right before its epoch block.
const SNAPSHOTS: usize = 2;

/// The chain submission that anchors `anchor`.
pub fn anchor_submission(anchor: &SignedAnchor) -> Submission {
    let record = anchor.record();
    Submission::Anchor {
        subnet: record.subnet,
        epoch: record.epoch,
        record_hash: anchor.hash(),
        record: anchor.to_bytes().to_vec(),
    }
}

/// Settles each ended epoch of one subnet for one miner.
pub struct Settler {
    key: SecretKey,
    subnet: u16,
    store: ReceiptStore,
    journal: Journal,
    log_path: PathBuf,
    genesis: LedgerState,
    /// The ledger as far as read, and the hash of its last block.
    state: LedgerState,
    prev_hash: [u8; 32],
    /// The states just before the epoch blocks not settled yet, to settle from.
    snapshots: EpochSnapshots,
    reader: Option<LocalLog>,
    /// With a chain: the session that keeps the mirror in step, and the outbox anchors wait in.
    chain: Option<(ChainSession, Outbox)>,
    last_settled: Option<u64>,
    metrics: Option<agora::metrics::Metrics>,
}

impl Settler {
    /// A settler for `key`'s receipts in `store` on `subnet`, journaling to `journal`.
    pub fn new(
        key: SecretKey,
        subnet: u16,
        store: ReceiptStore,
        ledger: &LedgerPaths,
        journal: &Path,
    ) -> anyhow::Result<Self> {
        let genesis_path = ledger.genesis_path()?;
        let genesis = LedgerGenesis::load(&genesis_path)
            .with_context(|| {
                format!(
                    "--settle needs the ledger genesis: reading {}",
                    genesis_path.display()
                )
            })?
            .to_state();
        let journal = Journal::open(journal)
            .with_context(|| format!("opening the anchor journal {}", journal.display()))?;
        if let Some(torn) = journal.recovered_tail() {
            eprintln!("note: cut {torn} bytes of an unfinished record off the end of the journal");
        }
        let me = key.public();
        let last_settled = journal
            .entries()
            .iter()
            .filter(|e| e.anchorer == me && e.subnet == subnet)
            .map(|e| e.epoch)
            .max();
        let mut snapshots = EpochSnapshots::new(subnet, SNAPSHOTS);
        if let Some(epoch) = last_settled {
            snapshots.settled_through(epoch);
        }
        let log_path = ledger.log_path()?;
        let chain = if ledger.chain.enabled() {
            if ledger.chain.signer()?.is_none() {
                anyhow::bail!("--settle with a chain needs --chain-key (or AGORA_CHAIN_KEY)");
            }
            let outbox = Outbox::open(&outbox_dir(&log_path))?;
            Some((ChainSession::open(&ledger.chain, &log_path)?, outbox))
        } else {
            None
        };
        Ok(Self {
            key,
            subnet,
            store,
            journal,
            log_path,
            state: genesis.clone(),
            genesis,
            prev_hash: GENESIS_PREV_HASH,
            snapshots,
            reader: None,
            chain,
            last_settled,
            metrics: None,
        })
    }

    /// Reports the anchor gauges into `metrics`.
    pub fn with_metrics(mut self, metrics: agora::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs [`Settler::tick`] every half second on its own thread until `stop` is set.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("settlement".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match self.tick() {
                        Ok(()) => {}
                        Err(e) if is_fatal(&e) => {
                            eprintln!("settlement stopped: {e:#}");
                            return;
                        }
                        Err(e) => eprintln!("settlement: {e:#}"),
                    }
                    std::thread::sleep(POLL);
                }
            })
    }

    /// One step: send what the outbox holds and mirror the chain (with one), read the new
    /// blocks, and settle the latest ended epoch if it is newer than the last one settled.
    pub fn tick(&mut self) -> anyhow::Result<()> {
        self.chain_round()?;
        if !self.catch_up()? {
            return Ok(());
        }
        let Some(epoch) = self.latest_ended_epoch() else {
            return Ok(());
        };
        if self.last_settled.is_none_or(|last| last < epoch) {
            self.settle(epoch)?;
            self.chain_round()?;
        }
        self.report_gauges()
    }

    fn report_gauges(&self) -> anyhow::Result<()> {
        if let Some(m) = &self.metrics {
            let pending = match &self.chain {
                Some((_, outbox)) => outbox.len()? as u64,
                None => 0,
            };
            m.set_anchors(self.last_settled.unwrap_or(0), pending);
        }
        Ok(())
    }

    fn chain_round(&mut self) -> anyhow::Result<()> {
        let Some((session, outbox)) = &mut self.chain else {
            return Ok(());
        };
        match session.round(Some(outbox)) {
            Ok(round) => {
                for (path, reason) in &round.flushed.failed {
                    eprintln!("the chain refused {}: {reason}", path.display());
                }
            }
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) => eprintln!("chain unreachable, anchors stay queued: {e:#}"),
        }
        Ok(())
    }

    /// Applies the blocks written since the last call; false while there is no log yet.
    fn catch_up(&mut self) -> anyhow::Result<bool> {
        if self.reader.is_none() {
            if !self.log_path.exists() {
                return Ok(false);
            }
            self.reader = Some(LocalLog::open_read_only(&self.log_path)?);
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(false);
        };
        let (hash, _) = catch_up_keeping(
            reader,
            &mut self.state,
            self.prev_hash,
            256,
            &mut self.snapshots,
        )
        .context("replaying the ledger log")?;
        self.prev_hash = hash;
        Ok(true)
    }

    /// The latest epoch of the subnet whose consensus block the ledger has reached.
    fn latest_ended_epoch(&self) -> Option<u64> {
        let height = self.state.height();
        let current = self.state.subnet(self.subnet)?.epoch_index(height);
        [current, current.checked_sub(1)?].into_iter().find(|e| {
            epoch_window(&self.state, self.subnet, *e).is_ok_and(|w| w.end_block <= height)
        })
    }

    fn settle(&mut self, epoch: u64) -> anyhow::Result<()> {
        let window = epoch_window(&self.state, self.subnet, epoch)?;
        let replayed;
        let before_end = match self.snapshots.before_end(&window) {
            Some(kept) => kept,
            None => {
                eprintln!(
                    "note: no ledger state kept at block {} to settle epoch {epoch} from; \
                     replaying the log from genesis",
                    window.end_block - 1
                );
                let mut log = LocalLog::open_read_only(&self.log_path)?;
                replayed = replay_to(&mut log, self.genesis.clone(), window.end_block - 1)?;
                &replayed
            }
        };
        let done = settle(
            &self.store,
            before_end,
            self.subnet,
            epoch,
            &self.key,
            &mut self.journal,
        )?;
        let ids = self.store.anchored_ids(self.subnet, epoch)?;
        self.store.mark_settled(&ids)?;
        if let Some((_, outbox)) = &self.chain {
            outbox.push(&anchor_submission(&done.anchor))?;
        }
        self.last_settled = Some(epoch);
        self.snapshots.settled_through(epoch);
        let r = done.anchor.record();
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "settled epoch {epoch} of subnet {}: {} receipts, {} units paid, anchor {}{}",
            self.subnet,
            r.receipt_count,
            r.total_paid,
            hex::encode(done.anchor.hash()),
            if self.chain.is_some() {
                " (queued for the chain)"
            } else {
                ""
            }
        );
        let _ = out.flush();
        Ok(())
    }
}
