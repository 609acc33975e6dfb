//! Targets for the ledger's inputs: signed transactions (from the log, whoever wrote them) and the
//! local log file itself.

use crate::fixtures;
use agora_ledger::anchor::record::{ANCHOR_VERSION, FIRST_PREV_HASH, MAX_ANCHOR_RECORD_LEN};
use agora_ledger::anchor::{
    AnchorRecord, InclusionProof, Journal, SignedAnchor, receipt_leaf, record_hash,
};
use agora_ledger::log::{GENESIS_PREV_HASH, LocalLog, TxLog, block_hash};
use agora_ledger::state::LedgerGenesis;
use agora_ledger::state::tx::{MAX_TX_LEN, Role, Transaction, decode_tx};
use agora_protocols::{Signed, codec};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A transaction envelope as every node decodes it from the log (`decode_tx`), and the bare
/// `Transaction` payload: signed by the fixture key its role needs, with the nonce the fixture
/// ledger expects, and applied. A refusal is fine; a panic or a change in the total supply is not.
pub fn ledger_tx(data: &[u8]) {
    if let Ok(tx) = decode_tx(data) {
        match tx.to_bytes() {
            Ok(bytes) => assert_eq!(bytes, data, "a verified transaction re-encodes differently"),
            Err(e) => panic_invariant(&format!("a verified transaction does not encode: {e}")),
        }
        apply(&tx);
    }
    if let Ok(mut tx) = codec::decode::<Transaction>(data, MAX_TX_LEN) {
        match codec::encode(&tx) {
            Ok(bytes) => assert_eq!(bytes, data, "{tx:?} re-encodes differently"),
            Err(e) => panic_invariant(&format!("a decoded transaction does not encode: {e}")),
        }
        let key = match tx.role {
            Role::Coldkey => fixtures::coldkey(),
            Role::Hotkey => fixtures::hotkey(),
        };
        tx.nonce = fixtures::ledger_state().next_nonce(&key.public());
        if let Ok(signed) = Signed::sign(tx, &key) {
            apply(&signed);
        }
    }
}

fn apply(tx: &Signed<Transaction>) {
    let mut state = fixtures::ledger_state().clone();
    let before = state.state_root().ok();
    let result = state.apply_tx(tx);
    assert_eq!(
        state.total_held(),
        Some(state.total_issuance()),
        "supply not conserved after {:?} ({result:?})",
        tx.value().call.name()
    );
    let after = state.state_root().ok();
    assert!(after.is_some());
    if result.is_err() {
        assert_eq!(before, after, "a refused transaction changed the state");
    }
}

static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// A local ledger log file, read as a node reads it (`LocalLog::open_read_only`, then every
/// block): blocks must chain from genesis and hash to their seals, and the fixture genesis state
/// must take every block without panicking.
pub fn ledger_log(data: &[u8]) {
    let path = scratch_path();
    if std::fs::write(&path, data).is_ok() {
        read_log(&path);
    }
    let _ = std::fs::remove_file(&path);
}

fn scratch_path() -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("agora-fuzz-log-{}-{n}", std::process::id()))
}

fn read_log(path: &std::path::Path) {
    let Ok(mut log) = LocalLog::open_read_only(path) else {
        return;
    };
    let Ok(height) = log.height() else {
        return;
    };
    let Ok(blocks) = log.blocks_from(1, usize::MAX) else {
        return;
    };
    assert_eq!(
        blocks.len() as u64,
        height,
        "a log of {height} blocks read short"
    );
    let Ok(genesis) = LedgerGenesis::from_json(&fixtures::ledger_genesis_json()) else {
        return;
    };
    let mut state = genesis.to_state();
    let mut prev = GENESIS_PREV_HASH;
    for (block, expected_height) in blocks.iter().zip(1u64..) {
        assert_eq!(block.height, expected_height);
        assert_eq!(
            block.prev_hash, prev,
            "block {} does not chain",
            block.height
        );
        assert_eq!(
            block.hash,
            block_hash(block.height, &block.prev_hash, &block.txs)
        );
        prev = block.hash;
        if state.apply_block_bytes(block.height, &block.txs).is_err() {
            panic_invariant("a block at the next height was refused");
        }
        assert_eq!(state.total_held(), Some(state.total_issuance()));
    }
}

#[allow(clippy::panic)]
fn panic_invariant(what: &str) -> ! {
    panic!("invariant broken: {what}")
}

/// A signed anchor record as it is read back from a chain or a journal
/// (`SignedAnchor::from_bytes`), and the bare `AnchorRecord` payload, signed by the fixture key.
pub fn anchor_record(data: &[u8]) {
    if let Ok(anchor) = SignedAnchor::from_bytes(data) {
        assert_eq!(anchor.to_bytes(), data);
        assert_eq!(anchor.hash(), record_hash(data));
        assert_eq!(anchor.record().version, ANCHOR_VERSION);
    }
    if let Ok(mut record) = codec::decode::<AnchorRecord>(data, MAX_ANCHOR_RECORD_LEN) {
        match codec::encode(&record) {
            Ok(bytes) => assert_eq!(bytes, data, "{record:?} re-encodes differently"),
            Err(e) => panic_invariant(&format!("a decoded anchor record does not encode: {e}")),
        }
        let key = fixtures::provider();
        record.anchorer = key.public();
        record.version = ANCHOR_VERSION;
        match SignedAnchor::sign(record.clone(), &key) {
            Ok(signed) => match SignedAnchor::from_bytes(signed.to_bytes()) {
                Ok(back) => assert_eq!(back.record(), &record),
                Err(e) => panic_invariant(&format!("a freshly signed anchor is refused: {e}")),
            },
            Err(e) => panic_invariant(&format!("a decoded anchor record cannot be signed: {e}")),
        }
    }
}

/// An anchor journal file, read as `agora anchor` reads it (`Journal::open_read_only`): every
/// entry must chain to the previous one of its anchorer.
pub fn anchor_journal(data: &[u8]) {
    let path = scratch_path();
    if std::fs::write(&path, data).is_ok()
        && let Ok(journal) = Journal::open_read_only(&path)
    {
        let mut heads = std::collections::BTreeMap::new();
        for entry in journal.entries() {
            let head = heads.entry(entry.anchorer).or_insert(FIRST_PREV_HASH);
            assert_eq!(
                entry.prev_hash, *head,
                "a journal entry that does not chain"
            );
            *head = entry.hash;
        }
        for (anchorer, head) in heads {
            assert_eq!(journal.head(&anchorer), head);
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// A receipt's inclusion proof, in bytes and in its text form (`InclusionProof::from_bytes`,
/// `from_text`, `verify`): a proof that verifies holds a receipt that verifies, under an anchor
/// whose receipts root it really reaches.
pub fn inclusion_proof(data: &[u8]) {
    let mut proofs = Vec::new();
    if let Ok(proof) = InclusionProof::from_bytes(data) {
        match proof.to_bytes() {
            Ok(bytes) => assert_eq!(bytes, data, "an inclusion proof re-encodes differently"),
            Err(e) => panic_invariant(&format!("a decoded inclusion proof does not encode: {e}")),
        }
        proofs.push(proof);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(proof) = InclusionProof::from_text(text)
    {
        proofs.push(proof);
    }
    for proof in proofs {
        if let Ok(verified) = proof.verify() {
            assert!(verified.receipt.verify().is_ok());
            let record = verified.anchor.record();
            assert!(
                proof
                    .merkle
                    .verify(&record.receipts_root, &receipt_leaf(&proof.receipt))
                    .is_ok()
            );
            assert_eq!(verified.receipt.body().subnet, record.subnet);
        }
    }
}
