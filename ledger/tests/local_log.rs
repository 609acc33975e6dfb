#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The local ordered log: durable appends, blocks hash-chained, replay deterministic, torn tails
//! recovered, one writer only, corruption reported with its offset.

use agora_ledger::balances::{Genesis, UNITS_PER_TOKEN};
use agora_ledger::log::{
    GENESIS_PREV_HASH, LocalLog, LogError, TxLog, block_hash, catch_up, replay,
};
use agora_ledger::state::{
    Call, GenesisSubnet, Hyperparameters, LedgerGenesis, LedgerParams, LedgerState, TxError,
    hotkey_binding_proof, sign_tx,
};
use agora_protocols::SecretKey;
use std::path::Path;

const TOKEN: u64 = UNITS_PER_TOKEN;

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i; 32])
}

fn genesis() -> LedgerState {
    let accounts = [
        (key(1).public(), 1000 * TOKEN),
        (key(2).public(), 10 * TOKEN),
    ]
    .into_iter()
    .collect();
    let subnet = GenesisSubnet {
        owner: key(1).public(),
        hyperparameters: Hyperparameters {
            tempo: 4,
            max_allowed_uids: 64,
            commit_reveal_enabled: false,
            weights_set_rate_limit: 0,
            ..Hyperparameters::default()
        },
    };
    LedgerGenesis::new(
        Genesis::new(accounts).unwrap(),
        LedgerParams::default(),
        vec![subnet],
    )
    .unwrap()
    .to_state()
}

/// Writes a log of `blocks` blocks with a few transactions each (some refused), sealed.
fn write_log(log: &mut LocalLog, blocks: u64) {
    let (a, b, h) = (key(1), key(2), key(10));
    let mut nonce = 0;
    let mut next = || {
        nonce += 1;
        nonce
    };
    let proof = hotkey_binding_proof(&h, &a.public());
    log.append(
        &sign_tx(
            &a,
            next(),
            Call::AssociateHotkey {
                hotkey: h.public(),
                proof,
            },
        )
        .unwrap(),
    )
    .unwrap();
    log.append(
        &sign_tx(
            &a,
            next(),
            Call::Register {
                netuid: 1,
                hotkey: h.public(),
            },
        )
        .unwrap(),
    )
    .unwrap();
    log.seal_block().unwrap();
    for i in 1..blocks {
        let pay = Call::Transfer {
            to: b.public(),
            amount: i * TOKEN / 10,
        };
        log.append(&sign_tx(&a, next(), pay).unwrap()).unwrap();
        // Refused: b cannot pay this much.
        let over = Call::Transfer {
            to: a.public(),
            amount: 10_000 * TOKEN,
        };
        log.append(&sign_tx(&b, i, over).unwrap()).unwrap();
        if i % 3 == 0 {
            log.append(
                &sign_tx(
                    &h,
                    i,
                    Call::SetWeights {
                        netuid: 1,
                        uids: vec![0],
                        weights: vec![1],
                    },
                )
                .unwrap(),
            )
            .unwrap();
        }
        log.seal_block().unwrap();
    }
}

fn root_of(path: &Path) -> [u8; 32] {
    let mut reader = LocalLog::open_read_only(path).unwrap();
    replay(&mut reader, genesis()).unwrap().1
}

#[test]
fn append_reopen_replay_gives_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.log");
    let mut log = LocalLog::open(&path).unwrap();
    write_log(&mut log, 12);
    assert_eq!(log.height().unwrap(), 12);
    let (state, root, report) = replay(&mut log, genesis()).unwrap();
    assert_eq!(state.height(), 12);
    assert_eq!(report.blocks, 12);
    assert!(report.accepted >= 13);
    assert!(
        report
            .refused
            .iter()
            .all(|(_, _, e)| matches!(e, TxError::InsufficientBalance { .. }))
    );
    assert_eq!(report.refused.len(), 11);
    assert!(state.subnet(1).unwrap().epochs >= 2);
    drop(log);

    // Reopened as writer, and as a reader, twice: the same root.
    let mut again = LocalLog::open(&path).unwrap();
    assert_eq!(again.recovered_tail(), None);
    assert_eq!(replay(&mut again, genesis()).unwrap().1, root);
    drop(again);
    assert_eq!(root_of(&path), root);
    assert_eq!(root_of(&path), root);

    // Blocks are hash-chained from the genesis hash.
    let mut reader = LocalLog::open_read_only(&path).unwrap();
    let blocks = reader.blocks_from(1, 100).unwrap();
    assert_eq!(blocks.len(), 12);
    let mut prev = GENESIS_PREV_HASH;
    for b in &blocks {
        assert_eq!(b.prev_hash, prev);
        assert_eq!(b.hash, block_hash(b.height, &b.prev_hash, &b.txs));
        prev = b.hash;
    }
    assert_eq!(reader.blocks_from(13, 10).unwrap(), vec![]);
    assert_eq!(reader.blocks_from(5, 2).unwrap().len(), 2);

    // Appending more and catching up from the old state gives the full replay's root.
    let mut writer = LocalLog::open(&path).unwrap();
    let hash = writer.last_hash();
    writer
        .append(
            &sign_tx(
                &key(1),
                1000,
                Call::Transfer {
                    to: key(3).public(),
                    amount: TOKEN,
                },
            )
            .unwrap(),
        )
        .unwrap();
    writer.seal_block().unwrap();
    let mut live = state;
    let (_, report) = catch_up(&mut reader, &mut live, hash, 4).unwrap();
    assert_eq!(report.blocks, 1);
    assert_eq!(live.balance(&key(3).public()), TOKEN);
    drop(writer);
    assert_eq!(live.state_root().unwrap(), root_of(&path));
}

#[test]
fn a_torn_tail_is_truncated_and_everything_before_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.log");
    let mut log = LocalLog::open(&path).unwrap();
    write_log(&mut log, 5);
    let root = replay(&mut log, genesis()).unwrap().1;
    // One durable transaction in the open block.
    log.append(
        &sign_tx(
            &key(1),
            500,
            Call::Transfer {
                to: key(4).public(),
                amount: 1,
            },
        )
        .unwrap(),
    )
    .unwrap();
    drop(log);
    let whole = std::fs::metadata(&path).unwrap().len();

    // A crash mid-write: half a record header appended.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"AGL1\x01\x10\x00");
    std::fs::write(&path, &bytes).unwrap();
    // A reader stops before it without touching the file.
    assert_eq!(root_of(&path), root);
    let log = LocalLog::open(&path).unwrap();
    assert_eq!(log.recovered_tail(), Some(7));
    assert_eq!(log.pending(), 1, "the acknowledged transaction is kept");
    drop(log);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);

    // A crash inside the last record's payload: that record goes, the rest stays.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let mut log = LocalLog::open(&path).unwrap();
    assert!(log.recovered_tail().is_some());
    assert_eq!(log.pending(), 0);
    assert_eq!(log.height().unwrap(), 5);
    assert_eq!(replay(&mut log, genesis()).unwrap().1, root);
    // The log keeps working after recovery.
    log.seal_block().unwrap();
    drop(log);

    // A zero-filled tail (blocks allocated but never written) is torn too.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0u8; 100]);
    std::fs::write(&path, &bytes).unwrap();
    let mut log = LocalLog::open(&path).unwrap();
    assert_eq!(log.recovered_tail(), Some(100));
    assert_eq!(log.height().unwrap(), 6);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.log");
    let log = LocalLog::open(&path).unwrap();
    let err = LocalLog::open(&path).unwrap_err();
    match &err {
        LogError::Locked { pid, .. } => assert_eq!(*pid, std::process::id()),
        other => panic!("expected Locked, got {other}"),
    }
    assert!(err.to_string().contains("locked by another writer"));
    // Readers are welcome.
    let mut reader = LocalLog::open_read_only(&path).unwrap();
    assert!(matches!(
        reader.append(
            &sign_tx(
                &key(1),
                1,
                Call::Transfer {
                    to: key(2).public(),
                    amount: 1
                }
            )
            .unwrap()
        ),
        Err(LogError::ReadOnly(_))
    ));
    drop(log);
    let _again = LocalLog::open(&path).unwrap();
}

#[test]
fn a_dead_writers_lock_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.log");
    let lock = dir.path().join("ledger.log.lock");
    // A pid far above any pid_max: no such process.
    std::fs::write(&lock, "4000000000\n").unwrap();
    if Path::new("/proc/self").exists() {
        let log = LocalLog::open(&path).unwrap();
        let holder = std::fs::read_to_string(&lock).unwrap();
        assert_eq!(holder.trim(), std::process::id().to_string());
        drop(log);
        assert!(!lock.exists(), "the lock is released on drop");
    } else {
        assert!(matches!(
            LocalLog::open(&path),
            Err(LogError::Locked { .. })
        ));
    }
}

#[test]
fn a_corrupted_middle_record_is_reported_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.log");
    let mut log = LocalLog::open(&path).unwrap();
    write_log(&mut log, 4);
    drop(log);
    let clean = std::fs::read(&path).unwrap();

    // A flipped bit inside the first record's payload (the header is 45 bytes).
    let mut bytes = clean.clone();
    bytes[60] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    for result in [
        LocalLog::open(&path).map(|_| ()),
        LocalLog::open_read_only(&path).map(|_| ()),
    ] {
        match result {
            Err(LogError::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, 0);
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    let message = LocalLog::open(&path).unwrap_err().to_string();
    assert!(message.contains("offset 0"), "{message}");
    // Nothing was truncated by the failed open.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    // A damaged header of a later record names that record's offset.
    let second = clean_record_offset(&clean, 1);
    let mut bytes = clean.clone();
    bytes[second as usize + 6] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    match LocalLog::open(&path) {
        Err(LogError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, second);
            assert!(reason.contains("header"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // Damage after a reader scanned the file is caught when the block is read.
    std::fs::write(&path, &clean).unwrap();
    let mut reader = LocalLog::open_read_only(&path).unwrap();
    let mut bytes = clean.clone();
    bytes[60] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        reader.blocks_from(1, 10),
        Err(LogError::Corrupt { offset: 0, .. })
    ));

    // Every single-byte flip anywhere is either recovered as a torn tail or reported; never a
    // panic, never a different replay.
    let root = {
        std::fs::write(&path, &clean).unwrap();
        root_of(&path)
    };
    for at in (0..clean.len()).step_by(7) {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        match LocalLog::open_read_only(&path) {
            Err(LogError::Corrupt { offset, .. }) => assert!(offset <= at as u64),
            Err(other) => panic!("byte {at}: {other}"),
            Ok(mut r) => {
                // Only damage in the last record can be taken for a torn tail.
                let (state, _, _) = replay(&mut r, genesis()).unwrap();
                assert!(at as u64 >= clean_record_offset(&clean, usize::MAX));
                assert!(state.height() <= 4);
                if state.height() == 4 {
                    assert_eq!(state.state_root().unwrap(), root);
                }
            }
        }
    }
}

/// Offset of record `n` (0-based) in a clean log, or of the last record for `usize::MAX`.
fn clean_record_offset(bytes: &[u8], n: usize) -> u64 {
    let mut at = 0usize;
    let mut i = 0;
    loop {
        let len = u32::from_le_bytes(bytes[at + 5..at + 9].try_into().unwrap()) as usize;
        let next = at + 45 + len;
        if i == n || next >= bytes.len() {
            return at as u64;
        }
        at = next;
        i += 1;
    }
}

#[test]
fn garbage_in_the_log_is_refused_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.log");
    let mut log = LocalLog::open(&path).unwrap();
    log.append_bytes(b"not a transaction").unwrap();
    let good = sign_tx(
        &key(1),
        1,
        Call::Transfer {
            to: key(2).public(),
            amount: TOKEN,
        },
    )
    .unwrap();
    let mut forged = good.to_bytes().unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    log.append_bytes(&forged).unwrap();
    log.append(&good).unwrap();
    log.seal_block().unwrap();
    let (state, root, report) = replay(&mut log, genesis()).unwrap();
    assert_eq!(report.accepted, 1);
    assert!(matches!(report.refused[0], (1, 0, TxError::Malformed(_))));
    assert_eq!(report.refused[1], (1, 1, TxError::BadSignature));
    assert_eq!(state.balance(&key(2).public()), 11 * TOKEN);
    drop(log);
    assert_eq!(root_of(&path), root);
}
