#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Anchors: the epoch fold (deterministic, idempotent, a receipt never in two anchors), inclusion
//! proofs (valid ones pass, every kind of tampering fails), the journal (torn tails repaired at every
//! cut, damage before the end and chain breaks refused) and no panic on random input.

mod common;

use agora_ledger::anchor::record::{ANCHOR_VERSION, FIRST_PREV_HASH};
use agora_ledger::anchor::{
    AnchorRecord, EpochSummary, InclusionProof, Journal, JournalError, ProofError, ProveError,
    SettleError, SignedAnchor, build_anchor, epoch_window, fold_receipts, prove, settle,
};
use agora_ledger::balances::{Genesis, UNITS_PER_TOKEN};
use agora_ledger::state::{
    Call, GenesisSubnet, Hyperparameters, LedgerGenesis, LedgerParams, LedgerState,
    hotkey_binding_proof, sign_tx,
};
use agora_ledger::store::{ReceiptStore, StoreError};
use agora_protocols::{ContentId, PublicKey, Receipt, SecretKey};
use common::{full, half};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const TOKEN: u64 = UNITS_PER_TOKEN;
const SUBNET: u16 = 1;

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i; 32])
}

// ---- a ledger with one subnet, two neurons and weights --------------------------------------------

struct Ledger {
    state: LedgerState,
    nonces: BTreeMap<PublicKey, u64>,
}

impl Ledger {
    fn new() -> Self {
        let owner = key(1);
        let balances =
            Genesis::new([(owner.public(), 1000 * TOKEN)].into_iter().collect()).unwrap();
        let hyperparameters = Hyperparameters {
            tempo: 20,
            max_allowed_uids: 64,
            immunity_period: 10,
            commit_reveal_enabled: false,
            weights_set_rate_limit: 0,
            ..Hyperparameters::default()
        };
        let genesis = LedgerGenesis::new(
            balances,
            LedgerParams::default(),
            vec![GenesisSubnet {
                owner: owner.public(),
                hyperparameters,
            }],
        )
        .unwrap();
        let mut l = Self {
            state: genesis.to_state(),
            nonces: BTreeMap::new(),
        };
        let (h1, h2) = (key(11), key(12));
        for h in [&h1, &h2] {
            let proof = hotkey_binding_proof(h, &owner.public());
            l.run(
                &owner,
                Call::AssociateHotkey {
                    hotkey: h.public(),
                    proof,
                },
            );
            l.run(
                &owner,
                Call::Register {
                    netuid: SUBNET,
                    hotkey: h.public(),
                },
            );
        }
        l.run(
            &owner,
            Call::AddStake {
                hotkey: h1.public(),
                amount: 100 * TOKEN,
            },
        );
        l.set_weights();
        l
    }

    fn run(&mut self, signer: &SecretKey, call: Call) {
        let n = self.nonces.entry(signer.public()).or_insert(0);
        let tx = sign_tx(signer, *n, call).unwrap();
        *n += 1;
        let h = self.state.height() + 1;
        let results = self.state.apply_block(h, &[tx]).unwrap();
        results[0].clone().unwrap();
    }

    /// The validator (uid 0) weighs both uids.
    fn set_weights(&mut self) {
        self.run(
            &key(11),
            Call::SetWeights {
                netuid: SUBNET,
                uids: vec![0, 1],
                weights: vec![1, 3],
            },
        );
    }

    fn idle_to(&mut self, height: u64) {
        while self.state.height() < height {
            let h = self.state.height() + 1;
            self.state.apply_block(h, &[]).unwrap();
        }
    }

    /// The state just before the end block of the first epoch that ends after now (plus `later`).
    fn before_epoch_end(&mut self, later: u64) -> (u64, LedgerState) {
        let s = self.state.subnet(SUBNET).unwrap();
        let epoch = s.epoch_index(self.state.height() + 1) + later;
        let window = epoch_window(&self.state, SUBNET, epoch).unwrap();
        self.idle_to(window.end_block - 1);
        (epoch, self.state.clone())
    }
}

// ---- receipts -------------------------------------------------------------------------------------

fn store_with(dir: &Path, receipts: &[Receipt]) -> ReceiptStore {
    let store = ReceiptStore::open(&dir.join("receipts.redb")).unwrap();
    for r in receipts {
        store.put_receipt(r).unwrap();
    }
    store
}

fn anchorer() -> SecretKey {
    key(11)
}

// ---- the fold -------------------------------------------------------------------------------------

#[test]
fn epoch_window_is_the_block_where_the_epoch_runs() {
    let l = Ledger::new();
    let s = l.state.subnet(SUBNET).unwrap();
    for epoch in 1..50 {
        let w = epoch_window(&l.state, SUBNET, epoch).unwrap();
        assert!(s.is_epoch_block(w.end_block), "epoch {epoch}");
        assert_eq!(s.epoch_index(w.end_block), epoch);
        assert_eq!(w.end_block - w.weights_from, 21);
        let next = epoch_window(&l.state, SUBNET, epoch + 1).unwrap();
        assert_eq!(next.weights_from, w.end_block, "windows tile the blocks");
    }
    assert!(matches!(
        epoch_window(&l.state, SUBNET, u64::MAX),
        Err(SettleError::NoSuchEpoch { .. })
    ));
    assert!(matches!(
        epoch_window(&l.state, 9, 3),
        Err(SettleError::UnknownSubnet(9))
    ));
}

#[test]
fn the_fold_is_deterministic_and_building_twice_gives_the_same_record() {
    let mut l = Ledger::new();
    let (epoch, state) = l.before_epoch_end(0);
    let receipts: Vec<Receipt> = (0..40).map(|n| full(n, SUBNET, 1000 + n)).collect();
    let mut reversed = receipts.clone();
    reversed.reverse();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (store_a, store_b) = (
        store_with(a.path(), &receipts),
        store_with(b.path(), &reversed),
    );
    // Noise that must not be folded: another subnet, a provider-only half.
    store_a.put_receipt(&full(100, 2, 5)).unwrap();
    store_a.put_provider_half(&half(101, SUBNET, 7)).unwrap();

    let x = build_anchor(
        &store_a,
        &state,
        SUBNET,
        epoch,
        &anchorer(),
        FIRST_PREV_HASH,
    )
    .unwrap();
    let y = build_anchor(
        &store_b,
        &state,
        SUBNET,
        epoch,
        &anchorer(),
        FIRST_PREV_HASH,
    )
    .unwrap();
    assert_eq!(
        x.anchor.to_bytes(),
        y.anchor.to_bytes(),
        "insertion order does not matter"
    );
    let r = x.anchor.record();
    assert_eq!(r.receipt_count, 40);
    assert_eq!(r.total_paid, (0..40).map(|n| 1000 + n).sum::<u64>());
    assert_eq!(r.version, ANCHOR_VERSION);
    assert_eq!((r.subnet, r.epoch), (SUBNET, epoch));
    let mut ids = x.receipts.ids.clone();
    ids.sort();
    assert_eq!(ids, x.receipts.ids, "leaves are ordered by receipt id");
    assert!(x.receipts.newly_recorded);

    // The summary saw the weights and the run.
    assert_eq!(x.summary.weights.len(), 1, "the weights set in the window");
    assert_eq!(x.summary.consensus.len(), 2);
    assert_eq!(
        x.summary.emission,
        x.summary.consensus.iter().map(|c| c.emission).sum::<u64>()
    );
    assert!(x.summary.emission > 0);

    // Built again, after more receipts arrived: the same record, the new receipts wait.
    store_a.put_receipt(&full(200, SUBNET, 9)).unwrap();
    let again = build_anchor(
        &store_a,
        &state,
        SUBNET,
        epoch,
        &anchorer(),
        FIRST_PREV_HASH,
    )
    .unwrap();
    assert_eq!(again.anchor, x.anchor);
    assert_eq!(again.anchor.hash(), x.anchor.hash());
    assert!(!again.receipts.newly_recorded);
}

#[test]
fn weights_revealed_in_the_window_are_folded() {
    let mut l = Ledger::new();
    let (_, _) = l.before_epoch_end(0);
    // Past that epoch's end, set weights again: they fall in the next window.
    l.idle_to(l.state.height() + 2);
    l.set_weights();
    let (epoch, state) = l.before_epoch_end(0);
    let summary = EpochSummary::compute(&state, SUBNET, epoch).unwrap();
    assert_eq!(summary.weights.len(), 1);
    assert_eq!(summary.weights[0].uid, 0);
    assert_eq!(summary.weights[0].weights.len(), 2);
    // The wrong height is refused, naming the one needed.
    let mut later = state.clone();
    later.apply_block(state.height() + 1, &[]).unwrap();
    assert!(matches!(
        EpochSummary::compute(&later, SUBNET, epoch),
        Err(SettleError::WrongHeight { .. })
    ));
}

#[test]
fn a_receipt_is_never_in_two_anchors() {
    let mut l = Ledger::new();
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<Receipt> = (0..5).map(|n| full(n, SUBNET, 10)).collect();
    let store = store_with(dir.path(), &first);
    let pending = half(50, SUBNET, 10);
    store.put_provider_half(&pending).unwrap();
    let mut journal = Journal::open(&dir.path().join("anchors.journal")).unwrap();

    let (e1, s1) = l.before_epoch_end(1);
    assert!(e1 >= 1);
    let a1 = settle(&store, &s1, SUBNET, e1, &anchorer(), &mut journal).unwrap();
    assert!(a1.appended);
    assert_eq!(a1.anchor.record().receipt_count, 5);

    // New receipts, and the half gets its countersignature: both go to the next epoch.
    for n in 5..8 {
        store.put_receipt(&full(n, SUBNET, 10)).unwrap();
    }
    store
        .put_receipt(&pending.clone().countersign(&key(2)).unwrap())
        .unwrap();
    let (e2, s2) = l.before_epoch_end(1);
    let a2 = settle(&store, &s2, SUBNET, e2, &anchorer(), &mut journal).unwrap();
    assert_eq!(a2.anchor.record().receipt_count, 4);
    assert_eq!(
        a2.anchor.record().prev_hash,
        a1.anchor.hash(),
        "hash-chained"
    );

    let ids1: BTreeSet<_> = store
        .anchored_ids(SUBNET, e1)
        .unwrap()
        .into_iter()
        .collect();
    let ids2: BTreeSet<_> = store
        .anchored_ids(SUBNET, e2)
        .unwrap()
        .into_iter()
        .collect();
    assert!(ids1.is_disjoint(&ids2));
    assert!(ids2.contains(&pending.id()));
    assert_eq!(ids1.len() + ids2.len(), 9);

    // Settling the first epoch again returns the journaled record and changes nothing.
    let again = settle(&store, &s1, SUBNET, e1, &anchorer(), &mut journal).unwrap();
    assert!(!again.appended);
    assert_eq!(again.anchor, a1.anchor);
    assert_eq!(journal.len(), 2);

    // The store refuses to put an anchored receipt into another epoch, or to go back in time.
    let id = *ids1.iter().next().unwrap();
    let summary = agora_ledger::store::AnchoredEpoch {
        receipt_count: 1,
        total_paid: 10,
        receipts_root: [0; 32],
    };
    assert!(matches!(
        store.record_anchor(SUBNET, e2 + 5, &[id], &summary),
        Err(StoreError::AlreadyAnchored { .. })
    ));
    assert!(matches!(
        store.record_anchor(
            SUBNET,
            e1 - 1,
            &[],
            &agora_ledger::store::AnchoredEpoch {
                receipt_count: 0,
                ..summary
            }
        ),
        Err(StoreError::AnchorOrder { .. })
    ));
    assert!(matches!(
        fold_receipts(&store, SUBNET, e1 - 1),
        Err(SettleError::Store(StoreError::AnchorOrder { .. }))
    ));
}

// ---- proofs ---------------------------------------------------------------------------------------

struct Anchored {
    _dir: tempfile::TempDir,
    store: ReceiptStore,
    journal: Journal,
    receipts: Vec<Receipt>,
}

fn anchored(count: u64) -> Anchored {
    let mut l = Ledger::new();
    let dir = tempfile::tempdir().unwrap();
    let receipts: Vec<Receipt> = (0..count).map(|n| full(n, SUBNET, 7 + n)).collect();
    let store = store_with(dir.path(), &receipts);
    let mut journal = Journal::open(&dir.path().join("anchors.journal")).unwrap();
    let (epoch, state) = l.before_epoch_end(0);
    settle(&store, &state, SUBNET, epoch, &anchorer(), &mut journal).unwrap();
    Anchored {
        _dir: dir,
        store,
        journal,
        receipts,
    }
}

#[test]
fn proofs_verify_against_the_journal_in_both_encodings() {
    let a = anchored(70);
    for r in &a.receipts {
        let proof = prove(&a.store, &a.journal, &r.id()).unwrap();
        let ok = proof.verify().unwrap();
        assert_eq!(ok.receipt.id(), r.id());
        ok.verify_against_journal(&a.journal).unwrap();
        assert!(a.journal.contains_hash(&ok.anchor_hash()));
        let bytes = proof.to_bytes().unwrap();
        assert_eq!(InclusionProof::from_bytes(&bytes).unwrap(), proof);
        let text = proof.to_text().unwrap();
        assert_eq!(InclusionProof::from_text(&text).unwrap(), proof);
        assert_eq!(
            InclusionProof::from_text(&hex::encode(&bytes)).unwrap(),
            proof
        );
    }
    // Not anchored yet, and unknown, are told apart.
    let late = full(999, SUBNET, 1);
    a.store.put_receipt(&late).unwrap();
    assert!(matches!(
        prove(&a.store, &a.journal, &late.id()),
        Err(ProveError::NotAnchored(_))
    ));
    assert!(matches!(
        prove(&a.store, &a.journal, &ContentId([7; 32])),
        Err(ProveError::Unknown(_))
    ));
}

#[test]
fn tampered_proofs_are_rejected() {
    let a = anchored(40);
    let proof = prove(&a.store, &a.journal, &a.receipts[3].id()).unwrap();
    proof.verify().unwrap();

    // Any byte of the receipt changed.
    for i in 0..proof.receipt.len() {
        let mut p = proof.clone();
        p.receipt[i] ^= 0x01;
        assert!(p.verify().is_err(), "receipt byte {i}");
    }
    // Another valid receipt of the same anchor under this receipt's path.
    let mut p = proof.clone();
    p.receipt = a.receipts[4].to_bytes().unwrap();
    assert!(matches!(p.verify(), Err(ProofError::Merkle(_))));
    // The Merkle path: a leaf of the chunk, the index, the count.
    let mut p = proof.clone();
    let other = (p.merkle.leaf_index as usize + 1) % p.merkle.chunk.len();
    p.merkle.chunk[other][0] ^= 1;
    assert!(matches!(p.verify(), Err(ProofError::Merkle(_))));
    let mut p = proof.clone();
    p.leaf_index += 1;
    p.merkle.leaf_index += 1;
    assert!(p.verify().is_err());
    let mut p = proof.clone();
    p.merkle.leaf_count += 1;
    assert!(p.verify().is_err());
    // Any byte of the anchor envelope changed.
    for i in 0..proof.anchor.len() {
        let mut p = proof.clone();
        p.anchor[i] ^= 0x01;
        assert!(p.verify().is_err(), "anchor byte {i}");
    }
    // A record re-signed by someone else who names the real anchorer: refused.
    let record: AnchorRecord = SignedAnchor::from_bytes(&proof.anchor)
        .unwrap()
        .record()
        .clone();
    assert!(SignedAnchor::sign(record.clone(), &key(99)).is_err());
    // A record with another root, validly signed by another key as its own anchorer: the proof
    // fails the root, and the journal does not know it.
    let forged = AnchorRecord {
        anchorer: key(99).public(),
        ..record.clone()
    };
    let forged = SignedAnchor::sign(forged, &key(99)).unwrap();
    let mut p = proof.clone();
    p.anchor = forged.to_bytes().to_vec();
    let ok = p.verify().unwrap();
    assert!(matches!(
        ok.verify_against_journal(&a.journal),
        Err(ProofError::NotInJournal { .. })
    ));
    // The real anchorer's key signing another root for the same epoch: not under that root.
    let other_root = SignedAnchor::sign(
        AnchorRecord {
            receipts_root: [1; 32],
            ..record.clone()
        },
        &anchorer(),
    )
    .unwrap();
    let mut p = proof.clone();
    p.anchor = other_root.to_bytes().to_vec();
    assert!(matches!(p.verify(), Err(ProofError::Merkle(_))));
    // ... or the same root with another total: the proof holds, but the journal has another record
    // for that anchorer, subnet and epoch.
    let other_total = SignedAnchor::sign(
        AnchorRecord {
            total_paid: record.total_paid + 1,
            ..record
        },
        &anchorer(),
    )
    .unwrap();
    let mut p = proof.clone();
    p.anchor = other_total.to_bytes().to_vec();
    assert!(matches!(
        p.verify().unwrap().verify_against_journal(&a.journal),
        Err(ProofError::Conflict { .. })
    ));
    // The text form's readable fields are not trusted; a wrong format name is refused.
    let text = proof
        .to_text()
        .unwrap()
        .replace("agora-inclusion-proof", "something-else");
    assert!(matches!(
        InclusionProof::from_text(&text),
        Err(ProofError::Text(_))
    ));
}

// ---- the journal ----------------------------------------------------------------------------------

/// A journal of `n` records for subnets 1.. with epochs 1.. (records need no ledger).
fn records(n: u64, key: &SecretKey, first_prev: [u8; 32]) -> Vec<SignedAnchor> {
    let mut prev = first_prev;
    (0..n)
        .map(|i| {
            let a = SignedAnchor::sign(
                AnchorRecord {
                    version: ANCHOR_VERSION,
                    subnet: 1,
                    epoch: i + 1,
                    anchorer: key.public(),
                    receipts_root: [i as u8; 32],
                    receipt_count: i,
                    total_paid: i * 10,
                    weights_root: [2; 32],
                    consensus_root: [3; 32],
                    emission: 5,
                    prev_hash: prev,
                },
                key,
            )
            .unwrap();
            prev = a.hash();
            a
        })
        .collect()
}

fn write_journal(path: &Path, anchors: &[SignedAnchor]) -> Vec<u64> {
    let mut j = Journal::open(path).unwrap();
    for a in anchors {
        j.append(a).unwrap();
    }
    j.entries().iter().map(|e| e.offset).collect()
}

#[test]
fn a_torn_last_record_is_cut_off_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let anchors = records(3, &anchorer(), FIRST_PREV_HASH);
    let offsets = write_journal(&path, &anchors);
    let whole = std::fs::read(&path).unwrap();
    let last = offsets[2] as usize;
    for cut in last + 1..whole.len() {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let reader = Journal::open_read_only(&path).unwrap();
        assert_eq!(reader.len(), 2, "cut at {cut}");
        assert_eq!(reader.torn_tail(), Some((cut - last) as u64));
        drop(reader);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.len(), 2, "cut at {cut}");
        assert_eq!(j.recovered_tail(), Some((cut - last) as u64));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), last as u64);
        assert_eq!(j.head(&anchorer().public()), anchors[1].hash());
    }
    // A bad checksum in the last record only, or a zero-filled end: torn, repaired.
    let mut bad_last = whole.clone();
    let end = bad_last.len() - 1;
    bad_last[end] ^= 0xff;
    std::fs::write(&path, &bad_last).unwrap();
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.len(), 2);
    drop(j);
    let mut zeros = whole[..last].to_vec();
    zeros.extend_from_slice(&[0u8; 300]);
    std::fs::write(&path, &zeros).unwrap();
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.recovered_tail(), Some(300));
    // The repaired journal takes the lost record again.
    j.append(&anchors[2]).unwrap();
    drop(j);
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.recovered_tail(), None);
    assert_eq!(
        j.get(&anchorer().public(), 1, 3).unwrap().unwrap(),
        anchors[2]
    );
}

#[test]
fn damage_before_the_end_is_an_error_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let anchors = records(3, &anchorer(), FIRST_PREV_HASH);
    let offsets = write_journal(&path, &anchors);
    let whole = std::fs::read(&path).unwrap();
    for at in [
        offsets[1] as usize,
        offsets[1] as usize + 20,
        offsets[1] as usize + 100,
    ] {
        let mut bad = whole.clone();
        bad[at] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        for result in [Journal::open_read_only(&path), Journal::open(&path)] {
            match result {
                Err(JournalError::Corrupt { offset, .. }) => assert_eq!(offset, offsets[1]),
                other => panic!("byte {at}: {other:?}"),
            }
        }
        // Nothing was repaired.
        assert_eq!(std::fs::read(&path).unwrap(), bad);
    }
}

#[test]
fn a_broken_hash_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let anchors = records(2, &anchorer(), FIRST_PREV_HASH);
    // Appending out of chain is refused, and so is a second record for one epoch.
    let mut j = Journal::open(&dir.path().join("j")).unwrap();
    assert!(matches!(
        j.append(&anchors[1]),
        Err(JournalError::ChainBreak { .. })
    ));
    j.append(&anchors[0]).unwrap();
    let twin = records(1, &anchorer(), anchors[0].hash());
    let twin = SignedAnchor::sign(
        AnchorRecord {
            epoch: 1,
            ..twin[0].record().clone()
        },
        &anchorer(),
    )
    .unwrap();
    assert!(matches!(
        j.append(&twin),
        Err(JournalError::Duplicate { .. })
    ));
    drop(j);

    // A file whose second record does not chain (two journals glued together) is corrupt at it.
    let x = dir.path().join("x");
    let y = dir.path().join("y");
    write_journal(&x, &anchors[..1]);
    let unchained = records(2, &anchorer(), FIRST_PREV_HASH);
    let lone = SignedAnchor::sign(
        AnchorRecord {
            prev_hash: [9; 32],
            ..unchained[1].record().clone()
        },
        &anchorer(),
    )
    .unwrap();
    // Written through a journal that believes it is first: only possible by forging its prev.
    let glued_path = dir.path().join("glued");
    let mut glued = std::fs::read(&x).unwrap();
    {
        let mut jy = Journal::open(&y).unwrap();
        // Make `lone` acceptable to the fresh journal by giving it a zero prev_hash.
        let fresh = SignedAnchor::sign(
            AnchorRecord {
                prev_hash: FIRST_PREV_HASH,
                ..lone.record().clone()
            },
            &anchorer(),
        )
        .unwrap();
        jy.append(&fresh).unwrap();
    }
    let first_len = glued.len() as u64;
    glued.extend_from_slice(&std::fs::read(&y).unwrap());
    std::fs::write(&glued_path, &glued).unwrap();
    match Journal::open_read_only(&glued_path) {
        Err(JournalError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, first_len);
            assert!(reason.contains("chain"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_anchorers_chain_separately_in_one_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let a = records(2, &key(31), FIRST_PREV_HASH);
    let b = records(2, &key(32), FIRST_PREV_HASH);
    let mut j = Journal::open(&path).unwrap();
    for r in [&a[0], &b[0], &a[1], &b[1]] {
        j.append(r).unwrap();
    }
    drop(j);
    let j = Journal::open_read_only(&path).unwrap();
    assert_eq!(j.len(), 4);
    assert_eq!(j.head(&key(31).public()), a[1].hash());
    assert_eq!(j.head(&key(32).public()), b[1].hash());
    assert!(Journal::open_read_only(&path).is_ok());
    let writer = Journal::open(&path).unwrap();
    assert!(matches!(
        Journal::open(&path),
        Err(JournalError::Locked { .. })
    ));
    drop(writer);
}

#[test]
fn the_signed_anchor_has_a_fixed_size_and_a_bounded_decoder() {
    let a = &records(1, &anchorer(), FIRST_PREV_HASH)[0];
    assert_eq!(
        a.to_bytes().len(),
        agora_ledger::anchor::record::SIGNED_ANCHOR_LEN
    );
    assert_eq!(
        SignedAnchor::from_bytes(a.to_bytes()).unwrap().hash(),
        agora_ledger::anchor::record_hash(a.to_bytes())
    );
    let big = vec![0u8; agora_ledger::anchor::MAX_SIGNED_ANCHOR_LEN + 1];
    assert!(SignedAnchor::from_bytes(&big).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = InclusionProof::from_bytes(&bytes).map(|p| p.verify().is_ok());
        let _ = InclusionProof::from_text(&String::from_utf8_lossy(&bytes));
        let _ = InclusionProof::from_text(&hex::encode(&bytes));
        let _ = SignedAnchor::from_bytes(&bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, &bytes).unwrap();
        let _ = Journal::open_read_only(&path);
        let _ = Journal::open(&path);
    }

    #[test]
    fn a_valid_journal_with_random_bytes_appended_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let anchors = records(2, &anchorer(), FIRST_PREV_HASH);
        write_journal(&path, &anchors);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(j) = Journal::open(&path) {
            prop_assert_eq!(j.len(), 2);
        }
    }
}
