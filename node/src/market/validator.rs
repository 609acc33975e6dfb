//! A validator's logic: score miners' answers to challenges, keep a moving average per uid, turn the
//! averages into a `u16` weight vector, and publish it on the ledger by commit then reveal (or
//! directly where the subnet has commit-reveal off), respecting the subnet's rate limit.
//!
//! The pure parts (scoring, weights, what to do next on the ledger) are plain functions over plain
//! data, so they are unit-tested here; `agora validate` (`cli/validate.rs`) drives them with the
//! mesh, the model and the ledger log.
//!
//! The salt of a commit is kept on disk ([`CommitStore`]) before the commit is sent, so a validator
//! that restarts between its commit and its reveal can still reveal: otherwise its weights for
//! that period would be lost.

use agora_ledger::log::{Block, LocalLog, LogError, TxLog};
use agora_ledger::state::LedgerState;
use agora_ledger::state::tx::{Call, sign_tx, weights_commit_hash};
use agora_protocols::{EmbedOutput, GenerateOutput, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Cosine an answer's vector must reach against the reference to count as right. Same model, same
/// text: honest answers differ only by float noise (batching, devices), far above this.
pub const MIN_COSINE: f64 = 0.99;

/// Why a validator step failed.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    /// The ledger log could not be used.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The writer lock stayed taken for the whole wait.
    #[error("the ledger log {path} stayed locked by another writer for {waited:?}")]
    LockTimeout {
        /// The log.
        path: PathBuf,
        /// How long we tried.
        waited: Duration,
    },
    /// The commit file could not be read or written.
    #[error("commit file {path}: {reason}")]
    CommitFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A transaction could not be encoded or hashed.
    #[error("encoding a transaction: {0}")]
    Codec(String),
}

/// Cosine similarity of two vectors; 0 when their lengths differ or either is all zeros.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Quality of an embedding answer: the share of its vectors within [`MIN_COSINE`] of the reference
/// (1 or 0 per vector); 0 when the number of vectors is wrong.
pub fn embed_quality(reference: &EmbedOutput, answer: &EmbedOutput) -> f64 {
    if reference.vectors.is_empty() || reference.vectors.len() != answer.vectors.len() {
        return 0.0;
    }
    let good = reference
        .vectors
        .iter()
        .zip(&answer.vectors)
        .filter(|(r, a)| cosine(r, a) >= MIN_COSINE)
        .count();
    good as f64 / reference.vectors.len() as f64
}

/// Quality of a greedy generation: the share of positions whose token id matches the reference,
/// over the longer of the two (so a truncated or padded answer loses too). Two empty answers match.
pub fn generate_quality(reference: &GenerateOutput, answer: &GenerateOutput) -> f64 {
    let longest = reference.token_ids.len().max(answer.token_ids.len());
    if longest == 0 {
        return 1.0;
    }
    let same = reference
        .token_ids
        .iter()
        .zip(&answer.token_ids)
        .filter(|(r, a)| r == a)
        .count();
    same as f64 / longest as f64
}

/// A mild latency factor in [0.5, 1]: 1 for an instant answer, 0.5 at (or past) the deadline. Mild on
/// purpose: a right answer that is slow is still worth far more than a wrong or missing one.
pub fn latency_factor(latency: Duration, deadline: Duration) -> f64 {
    if deadline.is_zero() {
        return 1.0;
    }
    let share = (latency.as_secs_f64() / deadline.as_secs_f64()).clamp(0.0, 1.0);
    1.0 - 0.5 * share
}

/// One challenge's outcome for one miner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probe {
    /// The miner answered: quality in [0, 1] and how long it took.
    Answered {
        /// See [`embed_quality`], [`generate_quality`].
        quality: f64,
        /// Time to the answer.
        latency: Duration,
    },
    /// No usable answer (unreachable, refused, timed out, undecodable): availability 0.
    Missed,
}

impl Probe {
    /// The sample in [0, 1]: quality times the latency factor; 0 when missed.
    pub fn score(&self, deadline: Duration) -> f64 {
        match *self {
            Probe::Answered { quality, latency } => {
                quality.clamp(0.0, 1.0) * latency_factor(latency, deadline)
            }
            Probe::Missed => 0.0,
        }
    }
}

/// Moving averages of each uid's samples. A uid whose hotkey changes (pruned and re-registered)
/// starts again: the new occupant did not earn the old one's score.
#[derive(Debug, Clone)]
pub struct Scores {
    alpha: f64,
    by_uid: BTreeMap<u16, (PublicKey, f64)>,
}

impl Scores {
    /// Averages with weight `alpha` (0..=1) on each new sample.
    pub fn new(alpha: f64) -> Self {
        Self {
            alpha: alpha.clamp(0.0, 1.0),
            by_uid: BTreeMap::new(),
        }
    }

    /// Adds a sample for `uid`; the first sample of an occupant is taken as is, so a fresh
    /// validator has usable weights after one round.
    pub fn record(&mut self, uid: u16, hotkey: PublicKey, sample: f64) {
        let sample = sample.clamp(0.0, 1.0);
        match self.by_uid.get_mut(&uid) {
            Some((key, ema)) if *key == hotkey => {
                *ema = self.alpha * sample + (1.0 - self.alpha) * *ema;
            }
            _ => {
                self.by_uid.insert(uid, (hotkey, sample));
            }
        }
    }

    /// Forgets uids no longer held by the same hotkey (`current`: uid → hotkey).
    pub fn retain(&mut self, current: &BTreeMap<u16, PublicKey>) {
        self.by_uid
            .retain(|uid, (key, _)| current.get(uid).is_some_and(|k| k == key));
    }

    /// The average of `uid`, if scored.
    pub fn get(&self, uid: u16) -> Option<f64> {
        self.by_uid.get(&uid).map(|(_, s)| *s)
    }

    /// Every scored uid (ascending) with its average.
    pub fn iter(&self) -> impl Iterator<Item = (u16, f64)> + '_ {
        self.by_uid.iter().map(|(uid, (_, s))| (*uid, *s))
    }

    /// The weight vector: every scored uid except `own`, ascending, scaled so the best is 65535
    /// (the ledger max-upscales anyway; doing it here keeps the committed vector the stored one).
    /// Zeros are kept explicit. `None` when no uid scores above zero: publishing all zeros would
    /// only burn the rate limit.
    pub fn weights(&self, own: Option<u16>) -> Option<(Vec<u16>, Vec<u16>)> {
        let rows: Vec<(u16, f64)> = self.iter().filter(|(uid, _)| Some(*uid) != own).collect();
        let max = rows.iter().map(|(_, s)| *s).fold(0.0f64, f64::max);
        if max <= 0.0 {
            return None;
        }
        let uids = rows.iter().map(|(uid, _)| *uid).collect();
        let weights = rows
            .iter()
            .map(|(_, s)| {
                let w = (s / max * 65535.0).round().clamp(0.0, 65535.0);
                w as u16
            })
            .collect();
        Some((uids, weights))
    }
}

/// A commit waiting for its reveal: everything needed to reveal it, kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommit {
    /// The subnet.
    pub netuid: u16,
    /// The committed uids.
    pub uids: Vec<u16>,
    /// The committed weights.
    pub weights: Vec<u16>,
    /// The salt, hex.
    pub salt: String,
    /// The commit hash, hex (what the ledger holds).
    pub hash: String,
}

impl PendingCommit {
    /// A commit of `(uids, weights)` by `hotkey` on `netuid` with a fresh random salt.
    pub fn new(
        hotkey: &PublicKey,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
    ) -> Result<Self, ValidatorError> {
        let mut salt = [0u8; 32];
        agora_protocols::keys::fill_random(&mut salt);
        let hash = weights_commit_hash(hotkey, netuid, &uids, &weights, &salt)
            .map_err(|e| ValidatorError::Codec(e.to_string()))?;
        Ok(Self {
            netuid,
            uids,
            weights,
            salt: hex::encode(salt),
            hash: hex::encode(hash),
        })
    }

    /// The salt's bytes.
    pub fn salt_bytes(&self) -> Vec<u8> {
        hex::decode(&self.salt).unwrap_or_default()
    }

    /// The commit transaction's call.
    pub fn commit_call(&self) -> Call {
        let mut commit_hash = [0u8; 32];
        if let Ok(bytes) = hex::decode(&self.hash)
            && bytes.len() == 32
        {
            commit_hash.copy_from_slice(&bytes);
        }
        Call::CommitWeights {
            netuid: self.netuid,
            commit_hash,
        }
    }

    /// The reveal transaction's call.
    pub fn reveal_call(&self) -> Call {
        Call::RevealWeights {
            netuid: self.netuid,
            uids: self.uids.clone(),
            weights: self.weights.clone(),
            salt: self.salt_bytes(),
        }
    }
}

/// The pending commit's file in the validator's state directory, replaced atomically (write a
/// temporary file, fsync, rename) so a crash leaves the old or the new one, never half of one.
#[derive(Debug, Clone)]
pub struct CommitStore {
    path: PathBuf,
}

impl CommitStore {
    /// The store for subnet `netuid` in `dir`.
    pub fn new(dir: &Path, netuid: u16) -> Self {
        Self {
            path: dir.join(format!("pending-commit-{netuid}.json")),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl ToString) -> ValidatorError {
        ValidatorError::CommitFile {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// The pending commit, if any.
    pub fn load(&self) -> Result<Option<PendingCommit>, ValidatorError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.error(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Keeps `pending` durably (before its commit is sent).
    pub fn save(&self, pending: &PendingCommit) -> Result<(), ValidatorError> {
        use std::io::Write;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(pending).map_err(|e| self.error(e))?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| self.error(e))?;
        file.write_all(&text).map_err(|e| self.error(e))?;
        file.sync_all().map_err(|e| self.error(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.error(e))
    }

    /// Forgets the pending commit (revealed or expired).
    pub fn clear(&self) -> Result<(), ValidatorError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }
}

/// What the ledger says about this validator, as of the next block (the one a transaction sent now
/// lands in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainView {
    /// Height of the next block.
    pub height: u64,
    /// The epoch a weight transaction in it belongs to (`Subnet::weights_epoch`).
    pub epoch: u64,
    /// Our uid.
    pub uid: u16,
    /// The subnet uses commit-reveal.
    pub commit_reveal: bool,
    /// `WeightsSetRateLimit`, blocks.
    pub rate_limit: u64,
    /// Blocks per epoch.
    pub tempo: u64,
    /// Our `last_update` on the ledger: block of our registration, last weight set or last
    /// commit (the rate limit counts from it).
    pub last_update: u64,
    /// Block we registered.
    pub registered_at: u64,
    /// Our newest commit on the ledger (the queue's last; this validator keeps one pending at a
    /// time): hash (hex) and reveal epoch.
    pub commit: Option<(String, u64)>,
}

impl ChainView {
    /// The view of `hotkey` on `netuid` as of the block after `state`; `None` when the subnet does
    /// not exist or the hotkey has no uid there.
    pub fn of(state: &LedgerState, netuid: u16, hotkey: &PublicKey) -> Option<Self> {
        let subnet = state.subnet(netuid)?;
        let neuron = subnet.neuron(hotkey)?;
        let height = state.height().saturating_add(1);
        let hyper = &subnet.hyperparameters;
        Some(Self {
            height,
            epoch: subnet.weights_epoch(height),
            uid: neuron.uid,
            commit_reveal: hyper.commit_reveal_enabled,
            rate_limit: hyper.weights_set_rate_limit,
            tempo: u64::from(hyper.tempo),
            last_update: neuron.last_update,
            registered_at: neuron.registered_at,
            commit: subnet
                .weight_commits(hotkey)
                .last()
                .map(|c| (hex::encode(c.hash), c.reveal_epoch)),
        })
    }
}

/// The next ledger step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do yet.
    Wait,
    /// Reveal the pending commit: its reveal epoch is now.
    Reveal,
    /// The pending commit is gone from the ledger (revealed, replaced, refused) or expired: forget it.
    DropPending,
    /// Commit new weights.
    Commit,
    /// Set weights directly (commit-reveal off).
    SetWeights,
}

/// What to do next, given the ledger's view, the commit kept on disk, and the wanted interval
/// between weight sets (`interval` blocks, at least the rate limit; 0 means one tempo).
pub fn plan(view: &ChainView, pending: Option<&PendingCommit>, interval: u64) -> Plan {
    if let Some(pending) = pending {
        return match &view.commit {
            Some((hash, reveal_epoch)) if *hash == pending.hash => {
                if view.epoch == *reveal_epoch {
                    Plan::Reveal
                } else if view.epoch < *reveal_epoch {
                    Plan::Wait
                } else {
                    Plan::DropPending
                }
            }
            _ => Plan::DropPending,
        };
    }
    let interval = if interval == 0 { view.tempo } else { interval };
    // The ledger's rate limit counts from `last_update` (0 passes, as on the chain). Our own
    // interval counts from our last weights transaction, which `last_update` is unless it still
    // holds the registration block: then only the rate limit applies.
    let last = view.last_update;
    let sent_since_registering = last != view.registered_at;
    let wait = if sent_since_registering {
        interval.max(view.rate_limit)
    } else {
        view.rate_limit
    };
    let due = last == 0 || view.height >= last.saturating_add(wait);
    match (due, view.commit_reveal) {
        (false, _) => Plan::Wait,
        (true, true) => Plan::Commit,
        (true, false) => Plan::SetWeights,
    }
}

/// Opens the log as its single writer, waiting while another process holds the lock (the block
/// sealer, the CLI, other validators each hold it for milliseconds).
pub fn open_writer(path: &Path, wait: Duration) -> Result<LocalLog, ValidatorError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match LocalLog::open(path) {
            Ok(log) => return Ok(log),
            Err(LogError::Locked { .. }) if started.elapsed() < wait => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(LogError::Locked { .. }) => {
                return Err(ValidatorError::LockTimeout {
                    path: path.to_path_buf(),
                    waited: started.elapsed(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Signs `call` with `key` at `nonce`, appends it to the log and seals it into its own block,
/// releasing the lock at once. Returns the block.
pub fn submit(
    path: &Path,
    wait: Duration,
    key: &SecretKey,
    nonce: u64,
    call: Call,
) -> Result<Block, ValidatorError> {
    let tx = sign_tx(key, nonce, call).map_err(|e| ValidatorError::Codec(e.to_string()))?;
    let mut log = open_writer(path, wait)?;
    log.append(&tx)?;
    Ok(log.seal_block()?)
}

/// Seals one empty block, waiting for the lock as [`open_writer`] does. The local log's clock.
pub fn seal_empty(path: &Path, wait: Duration) -> Result<Block, ValidatorError> {
    let mut log = open_writer(path, wait)?;
    Ok(log.seal_block()?)
}

const WORDS: &[&str] = &[
    "river", "copper", "lantern", "orbit", "meadow", "cipher", "harbor", "violet", "engine",
    "glacier", "tunnel", "falcon", "marble", "signal", "forest", "pepper", "canyon", "ember",
    "atlas", "quartz", "willow", "thunder", "pixel", "saddle", "beacon", "mosaic", "nectar",
    "prism", "tundra", "velvet", "anchor", "bramble",
];

/// `n` fresh challenge texts: random words and a random tag, so no miner can answer from a table
/// of past challenges.
pub fn challenge_texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut bytes = [0u8; 12];
            agora_protocols::keys::fill_random(&mut bytes);
            let words: Vec<&str> = bytes[..8]
                .iter()
                .map(|b| WORDS[usize::from(*b) % WORDS.len()])
                .collect();
            format!("{} {}", words.join(" "), hex::encode(&bytes[8..]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use agora_protocols::Finish;

    fn key(seed: u8) -> PublicKey {
        SecretKey::from_seed(&[seed; 32]).public()
    }

    fn emb(vectors: Vec<Vec<f32>>) -> EmbedOutput {
        EmbedOutput {
            dimension: vectors.first().map_or(0, |v| v.len() as u32),
            vectors,
            tokens: 0,
        }
    }

    fn gen_out(ids: &[u32]) -> GenerateOutput {
        GenerateOutput {
            text: String::new(),
            token_ids: ids.to_vec(),
            prompt_tokens: 0,
            finish: Finish::Length,
        }
    }

    #[test]
    fn embedding_quality_is_the_share_of_close_vectors() {
        let r = emb(vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]]);
        assert_eq!(embed_quality(&r, &r), 1.0);
        let close = emb(vec![vec![1.0, 0.001, 0.0], vec![0.0, 2.0, 0.0]]);
        assert_eq!(embed_quality(&r, &close), 1.0, "scale does not matter");
        let half = emb(vec![vec![1.0, 0.0, 0.0], vec![1.0, 1.0, 0.0]]);
        assert_eq!(embed_quality(&r, &half), 0.5);
        assert_eq!(embed_quality(&r, &emb(vec![vec![1.0, 0.0, 0.0]])), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn generation_quality_counts_matching_tokens_over_the_longer() {
        assert_eq!(
            generate_quality(&gen_out(&[1, 2, 3, 4]), &gen_out(&[1, 2, 3, 4])),
            1.0
        );
        assert_eq!(
            generate_quality(&gen_out(&[1, 2, 3, 4]), &gen_out(&[1, 2, 9, 4])),
            0.75
        );
        assert_eq!(
            generate_quality(&gen_out(&[1, 2, 3, 4]), &gen_out(&[1, 2])),
            0.5
        );
        assert_eq!(
            generate_quality(&gen_out(&[1, 2]), &gen_out(&[1, 2, 3, 4])),
            0.5
        );
        assert_eq!(generate_quality(&gen_out(&[]), &gen_out(&[])), 1.0);
    }

    #[test]
    fn latency_is_a_mild_factor_and_a_miss_scores_zero() {
        let d = Duration::from_secs(10);
        assert_eq!(latency_factor(Duration::ZERO, d), 1.0);
        assert_eq!(latency_factor(Duration::from_secs(5), d), 0.75);
        assert_eq!(latency_factor(Duration::from_secs(50), d), 0.5);
        let right = Probe::Answered {
            quality: 1.0,
            latency: Duration::from_secs(5),
        };
        assert_eq!(right.score(d), 0.75);
        let wrong = Probe::Answered {
            quality: 0.0,
            latency: Duration::ZERO,
        };
        assert_eq!(wrong.score(d), 0.0);
        assert_eq!(Probe::Missed.score(d), 0.0);
    }

    #[test]
    fn scores_average_reset_on_a_new_hotkey_and_scale_to_u16() {
        let mut s = Scores::new(0.5);
        s.record(1, key(1), 1.0);
        s.record(1, key(1), 0.0);
        assert_eq!(s.get(1), Some(0.5));
        s.record(2, key(2), 0.25);
        s.record(3, key(3), 0.0);
        s.record(0, key(9), 1.0);
        // Own uid 0 is left out; the best other is 65535; zeros stay explicit.
        let (uids, weights) = s.weights(Some(0)).unwrap();
        assert_eq!(uids, vec![1, 2, 3]);
        assert_eq!(weights, vec![65535, 32768, 0]);
        // uid 1 re-registered by someone else: its score starts over.
        s.record(1, key(7), 0.1);
        assert_eq!(s.get(1), Some(0.1));
        let current: BTreeMap<u16, PublicKey> = [(1, key(7)), (2, key(8))].into();
        s.retain(&current);
        assert_eq!(s.iter().map(|(u, _)| u).collect::<Vec<_>>(), vec![1]);
        let mut zero = Scores::new(0.5);
        zero.record(4, key(4), 0.0);
        assert_eq!(zero.weights(None), None);
    }

    fn view() -> ChainView {
        ChainView {
            height: 100,
            epoch: 9,
            uid: 0,
            commit_reveal: true,
            rate_limit: 5,
            tempo: 10,
            last_update: 90,
            registered_at: 90,
            commit: None,
        }
    }

    #[test]
    fn plan_commits_reveals_in_the_reveal_epoch_and_respects_the_rate_limit() {
        let pending = PendingCommit::new(&key(1), 1, vec![1, 2], vec![65535, 3]).unwrap();
        // Nothing yet: commit.
        assert_eq!(plan(&view(), None, 0), Plan::Commit);
        // Registered 3 blocks ago: the ledger's rate limit (5) counts from registration.
        let mut v = view();
        (v.last_update, v.registered_at) = (97, 97);
        assert_eq!(plan(&v, None, 0), Plan::Wait);
        v.height = 102;
        assert_eq!(plan(&v, None, 0), Plan::Commit);
        // Committed in epoch 9 for epoch 10: wait, then reveal, then it expires.
        let mut v = view();
        v.last_update = 99;
        v.commit = Some((pending.hash.clone(), 10));
        assert_eq!(plan(&v, Some(&pending), 0), Plan::Wait);
        v.epoch = 10;
        assert_eq!(plan(&v, Some(&pending), 0), Plan::Reveal);
        v.epoch = 11;
        assert_eq!(plan(&v, Some(&pending), 0), Plan::DropPending);
        // Revealed (the ledger holds no commit): forget it.
        v.commit = None;
        assert_eq!(plan(&v, Some(&pending), 0), Plan::DropPending);
        // Next commit once a tempo (10 blocks) has passed since the last one.
        v.height = 105;
        assert_eq!(plan(&v, None, 0), Plan::Wait);
        v.height = 109;
        assert_eq!(plan(&v, None, 0), Plan::Commit);
        // The rate limit wins over a shorter interval.
        v.rate_limit = 20;
        assert_eq!(plan(&v, None, 1), Plan::Wait);
        v.height = 119;
        assert_eq!(plan(&v, None, 1), Plan::Commit);
        // Commit-reveal off: set weights directly.
        v.commit_reveal = false;
        assert_eq!(plan(&v, None, 1), Plan::SetWeights);
    }

    #[test]
    fn pending_commits_survive_a_restart_and_hash_what_they_reveal() {
        let dir = tempfile::tempdir().unwrap();
        let store = CommitStore::new(dir.path(), 3);
        assert_eq!(store.load().unwrap(), None);
        let hot = SecretKey::from_seed(&[5; 32]);
        let pending = PendingCommit::new(&hot.public(), 3, vec![0, 2], vec![10, 65535]).unwrap();
        store.save(&pending).unwrap();
        let again = CommitStore::new(dir.path(), 3).load().unwrap().unwrap();
        assert_eq!(again, pending);
        let Call::RevealWeights {
            netuid,
            uids,
            weights,
            salt,
        } = again.reveal_call()
        else {
            panic!("a reveal");
        };
        let Call::CommitWeights { commit_hash, .. } = again.commit_call() else {
            panic!("a commit");
        };
        assert_eq!(
            weights_commit_hash(&hot.public(), netuid, &uids, &weights, &salt).unwrap(),
            commit_hash
        );
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
        store.clear().unwrap();
    }

    #[test]
    fn challenges_are_fresh() {
        let a = challenge_texts(3);
        let b = challenge_texts(3);
        assert_eq!(a.len(), 3);
        assert_ne!(a, b);
        assert!(a.iter().all(|t| t.split(' ').count() == 9));
    }

    #[test]
    fn the_writer_lock_is_waited_for_then_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let held = LocalLog::open(&path).unwrap();
        let err = open_writer(&path, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, ValidatorError::LockTimeout { .. }), "{err}");
        drop(held);
        let block = seal_empty(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(block.height, 1);
    }
}
