#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Settling from kept states: a follower of a real local log that keeps the state just before each
//! epoch block ([`EpochSnapshots`], [`catch_up_keeping`]) builds, epoch after epoch, exactly the
//! anchors built from a replay of the log from genesis ([`replay_to`]); it never holds more states
//! than asked; and after a restart it keeps states only for epochs not settled yet.

mod common;

use agora_ledger::anchor::settle::{EpochSnapshots, catch_up_keeping};
use agora_ledger::anchor::{Journal, SignedAnchor, epoch_window, replay_to, settle};
use agora_ledger::balances::{Genesis, UNITS_PER_TOKEN};
use agora_ledger::log::{GENESIS_PREV_HASH, LocalLog, TxLog};
use agora_ledger::state::{
    Call, GenesisSubnet, Hyperparameters, LedgerGenesis, LedgerParams, LedgerState,
    hotkey_binding_proof, sign_tx,
};
use agora_ledger::store::ReceiptStore;
use agora_protocols::{PublicKey, SecretKey};
use common::full;
use std::collections::BTreeMap;
use std::path::Path;

const TOKEN: u64 = UNITS_PER_TOKEN;
const SUBNET: u16 = 1;
const TEMPO: u16 = 6;

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i; 32])
}

fn genesis() -> LedgerState {
    let owner = key(1);
    let balances = Genesis::new([(owner.public(), 1000 * TOKEN)].into_iter().collect()).unwrap();
    let hyperparameters = Hyperparameters {
        tempo: TEMPO,
        max_allowed_uids: 64,
        immunity_period: 10,
        commit_reveal_enabled: false,
        weights_set_rate_limit: 0,
        ..Hyperparameters::default()
    };
    LedgerGenesis::new(
        balances,
        LedgerParams::default(),
        vec![GenesisSubnet {
            owner: owner.public(),
            hyperparameters,
        }],
    )
    .unwrap()
    .to_state()
}

/// Writes blocks to a real log, checking each transaction against its own copy of the state.
struct Writer {
    log: LocalLog,
    state: LedgerState,
    nonces: BTreeMap<PublicKey, u64>,
}

impl Writer {
    fn open(path: &Path) -> Self {
        Self {
            log: LocalLog::open(path).unwrap(),
            state: genesis(),
            nonces: BTreeMap::new(),
        }
    }

    /// One block holding `calls`, each of which must be accepted.
    fn block(&mut self, calls: Vec<(SecretKey, Call)>) {
        for (signer, call) in calls {
            let n = self.nonces.entry(signer.public()).or_insert(0);
            self.log
                .append(&sign_tx(&signer, *n, call).unwrap())
                .unwrap();
            *n += 1;
        }
        let block = self.log.seal_block().unwrap();
        let results = self
            .state
            .apply_block_bytes(block.height, &block.txs)
            .unwrap();
        for r in results {
            r.unwrap();
        }
    }

    fn idle(&mut self, blocks: u64) {
        for _ in 0..blocks {
            self.block(Vec::new());
        }
    }

    /// Two hotkeys registered under the owner, stake on the first.
    fn setup(&mut self) {
        let owner = key(1);
        for h in [key(11), key(12)] {
            let proof = hotkey_binding_proof(&h, &owner.public());
            self.block(vec![
                (
                    owner.clone(),
                    Call::AssociateHotkey {
                        hotkey: h.public(),
                        proof,
                    },
                ),
                (
                    owner.clone(),
                    Call::Register {
                        netuid: SUBNET,
                        hotkey: h.public(),
                    },
                ),
            ]);
        }
        self.block(vec![(
            owner,
            Call::AddStake {
                hotkey: key(11).public(),
                amount: 100 * TOKEN,
            },
        )]);
    }

    /// The validator (uid 0) weighs both uids, differently each time.
    fn weights(&mut self, step: u16) {
        self.block(vec![(
            key(11),
            Call::SetWeights {
                netuid: SUBNET,
                uids: vec![0, 1],
                weights: vec![1 + step % 5, 3],
            },
        )]);
    }
}

/// A receipt store and anchor journal of one anchorer.
struct Book {
    store: ReceiptStore,
    journal: Journal,
}

impl Book {
    fn open(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        Self {
            store: ReceiptStore::open(&dir.join("receipts.redb")).unwrap(),
            journal: Journal::open(&dir.join("anchors.journal")).unwrap(),
        }
    }

    fn settle(&mut self, state: &LedgerState, epoch: u64) -> SignedAnchor {
        let done = settle(
            &self.store,
            state,
            SUBNET,
            epoch,
            &key(11),
            &mut self.journal,
        )
        .unwrap();
        assert!(done.appended);
        done.anchor
    }
}

/// The latest epoch whose consensus block `state` has reached (as the node's settler picks it).
fn latest_ended_epoch(state: &LedgerState) -> Option<u64> {
    let height = state.height();
    let current = state.subnet(SUBNET)?.epoch_index(height);
    [current, current.checked_sub(1)?]
        .into_iter()
        .find(|e| epoch_window(state, SUBNET, *e).is_ok_and(|w| w.end_block <= height))
}

/// The state at `height` replayed from genesis off a fresh reader of the log.
fn replayed(log: &Path, height: u64) -> LedgerState {
    replay_to(
        &mut LocalLog::open_read_only(log).unwrap(),
        genesis(),
        height,
    )
    .unwrap()
}

#[test]
fn settling_from_kept_states_gives_the_anchors_of_a_replay_from_genesis() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("ledger.log");
    let mut writer = Writer::open(&path);
    writer.setup();

    let mut reader = LocalLog::open_read_only(&path).unwrap();
    let mut state = genesis();
    let mut prev = GENESIS_PREV_HASH;
    let mut kept = EpochSnapshots::new(SUBNET, 2);
    let (mut from_kept, mut from_replay) = (
        Book::open(&temp.path().join("kept")),
        Book::open(&temp.path().join("replay")),
    );
    let mut last_settled = None;
    let mut settled = Vec::new();
    let mut n = 0u64;
    let mut held_two = false;
    for step in 0..40u16 {
        // The log grows by an irregular number of blocks between catch-ups: sometimes none,
        // sometimes several epochs, sometimes stopping right before an epoch block.
        if step % 3 == 0 {
            writer.weights(step);
        }
        writer.idle(u64::from(step * 7 % 11));
        for _ in 0..step % 4 {
            let r = full(n, SUBNET, 100 + n);
            from_kept.store.put_receipt(&r).unwrap();
            from_replay.store.put_receipt(&r).unwrap();
            n += 1;
        }

        let (hash, _) = catch_up_keeping(&mut reader, &mut state, prev, 5, &mut kept).unwrap();
        prev = hash;
        assert_eq!(state, writer.state, "the follower is at the log's end");
        assert!(kept.heights().len() <= 2, "{:?}", kept.heights());
        held_two |= kept.heights().len() == 2;

        let Some(epoch) = latest_ended_epoch(&state) else {
            continue;
        };
        if last_settled.is_some_and(|last| last >= epoch) {
            continue;
        }
        let window = epoch_window(&state, SUBNET, epoch).unwrap();
        let before_end = kept
            .before_end(&window)
            .unwrap_or_else(|| panic!("no state kept for epoch {epoch}: {:?}", kept.heights()))
            .clone();
        let replay = replayed(&path, window.end_block - 1);
        assert_eq!(
            before_end, replay,
            "epoch {epoch}: the kept state is the replayed one"
        );
        let a = from_kept.settle(&before_end, epoch);
        let b = from_replay.settle(&replay, epoch);
        assert_eq!(a.to_bytes(), b.to_bytes(), "epoch {epoch}");
        kept.settled_through(epoch);
        assert!(
            kept.before_end(&window).is_none(),
            "a settled epoch's state is dropped"
        );
        last_settled = Some(epoch);
        settled.push(a);
    }
    // The run covered many epochs, with receipts, weights and emission in them.
    assert!(settled.len() >= 8, "{} epochs settled", settled.len());
    assert!(held_two, "a catch-up stopped right before an epoch block");
    assert!(settled.iter().any(|a| a.record().receipt_count > 0));
    assert!(settled.iter().all(|a| a.record().emission > 0));
    let weight_roots: std::collections::BTreeSet<_> =
        settled.iter().map(|a| a.record().weights_root).collect();
    assert!(weight_roots.len() > 2, "weights differ between epochs");
}

#[test]
fn a_restarted_follower_keeps_states_only_past_its_last_settled_epoch() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("ledger.log");
    let mut writer = Writer::open(&path);
    writer.setup();
    writer.weights(1);
    writer.idle(40);
    let latest = latest_ended_epoch(&writer.state).unwrap();
    let schedule = writer.state.clone();
    let end_before = |epoch: u64| epoch_window(&schedule, SUBNET, epoch).unwrap().end_block - 1;

    // Settled through the epoch before the latest: the replay from genesis on restart keeps the
    // latest's state (and the next one's when the log stops right before it), nothing older.
    let mut kept = EpochSnapshots::new(SUBNET, 2);
    kept.settled_through(latest - 1);
    let mut state = genesis();
    let mut reader = LocalLog::open_read_only(&path).unwrap();
    let (prev, _) =
        catch_up_keeping(&mut reader, &mut state, GENESIS_PREV_HASH, 256, &mut kept).unwrap();
    assert_eq!(kept.heights(), vec![end_before(latest)]);
    let window = epoch_window(&state, SUBNET, latest).unwrap();
    assert_eq!(
        kept.before_end(&window).unwrap(),
        &replayed(&path, end_before(latest))
    );
    let older = epoch_window(&state, SUBNET, latest - 1).unwrap();
    assert!(
        kept.before_end(&older).is_none(),
        "settled: only a replay has it"
    );

    // Following on to right before the next epoch block keeps that state too, and no more.
    writer.idle(end_before(latest + 1) - writer.state.height());
    catch_up_keeping(&mut reader, &mut state, prev, 3, &mut kept).unwrap();
    assert_eq!(
        kept.heights(),
        vec![end_before(latest), end_before(latest + 1)]
    );
    // Seeing the same height again keeps it once.
    assert!(!kept.observe(&state));
    assert_eq!(kept.heights().len(), 2);

    // Everything settled: nothing is kept on the way.
    let mut kept = EpochSnapshots::new(SUBNET, 2);
    kept.settled_through(latest + 1);
    let mut state = genesis();
    let mut reader = LocalLog::open_read_only(&path).unwrap();
    catch_up_keeping(&mut reader, &mut state, GENESIS_PREV_HASH, 256, &mut kept).unwrap();
    assert!(kept.heights().is_empty());

    // Nothing settled and room for one: the newest epoch block's state only.
    let mut kept = EpochSnapshots::new(SUBNET, 0);
    let mut state = genesis();
    let mut reader = LocalLog::open_read_only(&path).unwrap();
    catch_up_keeping(&mut reader, &mut state, GENESIS_PREV_HASH, 256, &mut kept).unwrap();
    assert_eq!(kept.heights(), vec![end_before(latest + 1)]);
}
