//! The chain as the ledger's log, against a real anvil (installed by `scripts/setup-tools`): the
//! contract deployed from its committed artifact, transactions queued in the durable outbox and
//! sent, three followers mirroring the chain to the same state root, the RPC killed and restarted
//! mid-way, reorgs above and below the finality depth, and anchors stored and found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agora_ledger::balances::Genesis;
use agora_ledger::chain::anvil::{Anvil, DEV_KEYS, default_binary};
use agora_ledger::chain::{
    ChainClient, ChainConfig, ChainError, Follower, Outbox, SentMarker, Submission, deploy,
};
use agora_ledger::log::{LocalLog, replay};
use agora_ledger::state::tx::{Call, sign_tx};
use agora_ledger::state::{LedgerGenesis, LedgerParams, LedgerState};
use agora_protocols::SecretKey;
use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEV_KEY_0: &str = DEV_KEYS[0];
const DEV_KEY_1: &str = DEV_KEYS[1];

fn start_anvil(dir: &Path) -> Anvil {
    let binary = default_binary().expect("a home directory");
    Anvil::start(&binary, dir, None).expect("anvil starts (installed by scripts/setup-tools)")
}

fn mine(anvil: &Anvil, blocks: u64) {
    runtime().block_on(anvil.mine(blocks)).unwrap();
}

fn anvil_rpc(anvil: &Anvil, method: &str, params: serde_json::Value) {
    runtime().block_on(anvil.request(method, params)).unwrap();
}

fn key(hex: &str) -> PrivateKeySigner {
    hex.parse().unwrap()
}

/// One runtime for the whole test binary: an HTTP client's pooled connections belong to the
/// runtime that opened them, so every client must be used on the runtime it was made on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

struct World {
    dir: tempfile::TempDir,
    anvil: Anvil,
    config: ChainConfig,
    genesis: LedgerGenesis,
    accounts: Vec<SecretKey>,
}

fn world(depth: u64) -> World {
    let dir = tempfile::tempdir().unwrap();
    let anvil = start_anvil(dir.path());
    let rt = runtime();
    let (contract, start_block) = rt
        .block_on(deploy(
            &anvil.url(),
            key(DEV_KEY_0),
            Duration::from_secs(30),
        ))
        .unwrap();
    let mut config = ChainConfig::new(anvil.url(), contract, start_block);
    config.chain_id = Some(31337);
    config.depth = depth;
    config.max_log_range = 7; // several ranges per sync, as against a public RPC
    let accounts: Vec<SecretKey> = (0..4).map(|i| SecretKey::from_seed(&[i + 1; 32])).collect();
    let balances: BTreeMap<_, _> = accounts
        .iter()
        .map(|k| (k.public(), 1_000_000_000_000))
        .collect();
    let genesis = LedgerGenesis::new(
        Genesis::new(balances).unwrap(),
        LedgerParams::default(),
        vec![],
    )
    .unwrap();
    World {
        dir,
        anvil,
        config,
        genesis,
        accounts,
    }
}

impl World {
    fn client(&self, key_hex: Option<&str>) -> ChainClient {
        runtime()
            .block_on(ChainClient::connect(self.config.clone(), key_hex.map(key)))
            .unwrap()
    }

    fn mirror(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join("ledger.log")
    }

    fn sync(&self, name: &str) -> agora_ledger::chain::SyncReport {
        let follower = Follower::new(self.client(None), &self.mirror(name));
        runtime().block_on(follower.sync()).unwrap()
    }

    fn state(&self, name: &str) -> (LedgerState, String) {
        let mut log = LocalLog::open_read_only(&self.mirror(name)).unwrap();
        let (state, root, _) = replay(&mut log, self.genesis.to_state()).unwrap();
        (state, hex::encode(root))
    }

    /// `n` signed transfers from account `from`, nonces from `first_nonce`.
    fn transfers(&self, from: usize, first_nonce: u64, n: u64) -> Vec<Submission> {
        (0..n)
            .map(|i| {
                let tx = sign_tx(
                    &self.accounts[from],
                    first_nonce + i,
                    Call::Transfer {
                        to: self.accounts[(from + 1) % self.accounts.len()].public(),
                        amount: 1_000 + i,
                    },
                )
                .unwrap();
                Submission::Transaction(tx.to_bytes().unwrap())
            })
            .collect()
    }

    /// Flushes until the outbox is empty (mining blocks so items become final).
    fn drain(&self, client: &ChainClient, outbox: &Outbox) {
        let rt = runtime();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !outbox.is_empty().unwrap() {
            let report = rt.block_on(client.flush(outbox)).unwrap();
            assert!(report.failed.is_empty(), "{:?}", report.failed);
            assert!(report.interrupted.is_none(), "{:?}", report.interrupted);
            mine(&self.anvil, 1);
            assert!(Instant::now() < deadline, "outbox did not drain");
        }
    }
}

#[test]
fn three_followers_reach_one_state_root_through_an_rpc_restart() {
    let mut w = world(2);
    let sender = w.client(Some(DEV_KEY_1));
    let outbox = Outbox::open(&w.dir.path().join("outbox")).unwrap();
    for s in w.transfers(0, 1, 12).iter().chain(&w.transfers(1, 1, 5)) {
        outbox.push(s).unwrap();
    }
    // Queuing the same thing again does nothing.
    outbox.push(&w.transfers(0, 1, 1)[0]).unwrap();
    assert_eq!(outbox.len().unwrap(), 17);
    w.drain(&sender, &outbox);
    assert_eq!(runtime().block_on(sender.sequence()).unwrap(), 17);

    // Follower a mirrors now; b and c later, from scratch and across the restart.
    let first = w.sync("a");
    assert_eq!(first.transactions, 17);

    // The RPC goes away: submissions queue durably and nothing is lost.
    w.anvil.stop();
    for s in w.transfers(0, 13, 6) {
        outbox.push(&s).unwrap();
    }
    let down = runtime().block_on(sender.flush(&outbox)).unwrap();
    assert!(
        down.interrupted.is_some(),
        "the flush must notice the RPC is down"
    );
    assert_eq!(down.sent, 0);
    assert_eq!(outbox.len().unwrap(), 6);
    let follower = Follower::new(sender.clone(), &w.mirror("a"));
    assert!(matches!(
        runtime().block_on(follower.sync()),
        Err(ChainError::Rpc { .. })
    ));

    // It comes back on the same port with its chain: the queue goes out, the followers resume.
    w.anvil.resume().unwrap();
    let sender = w.client(Some(DEV_KEY_1));
    w.drain(&sender, &outbox);
    mine(&w.anvil, 3);
    assert_eq!(runtime().block_on(sender.sequence()).unwrap(), 23);
    for name in ["a", "b", "c"] {
        w.sync(name);
    }
    let (state_a, root_a) = w.state("a");
    let (_, root_b) = w.state("b");
    let (_, root_c) = w.state("c");
    assert_eq!(root_a, root_b);
    assert_eq!(root_a, root_c);
    // Every transfer was applied exactly once, in order (nonces would refuse a reordering).
    assert_eq!(state_a.nonce(&w.accounts[0].public()), Some(18));
    assert_eq!(state_a.nonce(&w.accounts[1].public()), Some(5));
    let head = runtime().block_on(sender.head()).unwrap();
    assert_eq!(state_a.height(), head - 2 - w.config.start_block + 1);
}

#[test]
fn a_submission_already_on_chain_is_not_sent_again() {
    let w = world(0);
    let sender = w.client(Some(DEV_KEY_1));
    let outbox = Outbox::open(&w.dir.path().join("outbox")).unwrap();
    let tx = w.transfers(0, 1, 1).remove(0);
    outbox.push(&tx).unwrap();
    let rt = runtime();
    let report = rt.block_on(sender.flush(&outbox)).unwrap();
    assert_eq!(report.sent, 1);
    // A crash after sending but before the EVM hash was written: the marker says only that
    // sending started.
    let item = outbox.pending().unwrap().remove(0);
    let marker = item.sent.clone().unwrap();
    outbox
        .mark(
            &item,
            &SentMarker {
                from_block: marker.from_block,
                tx_hash: None,
            },
        )
        .unwrap();
    mine(&w.anvil, 1);
    let report = rt.block_on(sender.flush(&outbox)).unwrap();
    assert_eq!(report.sent, 0, "found on chain, not sent again");
    assert_eq!(report.confirmed, 1);
    assert!(outbox.is_empty().unwrap());
    assert_eq!(rt.block_on(sender.sequence()).unwrap(), 1);
}

#[test]
fn reorgs_below_the_depth_never_reach_the_mirror_and_deeper_ones_stop_it() {
    let w = world(4);
    let sender = w.client(Some(DEV_KEY_1));
    let outbox = Outbox::open(&w.dir.path().join("outbox")).unwrap();
    for s in w.transfers(0, 1, 3) {
        outbox.push(&s).unwrap();
    }
    w.drain(&sender, &outbox);
    mine(&w.anvil, 6);
    w.sync("a");
    let (_, before) = w.state("a");
    // Replace the last 3 blocks (above the depth of 4) with empty ones: nothing mirrored changes.
    anvil_rpc(&w.anvil, "anvil_reorg", serde_json::json!([3, []]));
    let report = w.sync("a");
    assert_eq!(report.transactions, 0);
    assert_eq!(w.state("a").1, before);
    // A reorg deeper than the depth rewrites a mirrored block: the follower refuses to go on.
    anvil_rpc(&w.anvil, "anvil_reorg", serde_json::json!([8, []]));
    let follower = Follower::new(w.client(None), &w.mirror("a"));
    match runtime().block_on(follower.sync()) {
        Err(ChainError::DeepReorg { .. }) => {}
        other => panic!("expected a deep reorg error, got {other:?}"),
    }
}

#[test]
fn anchors_are_stored_once_found_by_hash_and_conflicts_refused() {
    let w = world(0);
    let sender = w.client(Some(DEV_KEY_1));
    let outbox = Outbox::open(&w.dir.path().join("outbox")).unwrap();
    let record = vec![7u8; 301];
    let record_hash = *blake3::hash(&record).as_bytes();
    let anchor = Submission::Anchor {
        subnet: 3,
        epoch: 9,
        record_hash,
        record: record.clone(),
    };
    outbox.push(&anchor).unwrap();
    w.drain(&sender, &outbox);
    let rt = runtime();
    let me: Address = key(DEV_KEY_1).address();
    assert_eq!(
        rt.block_on(sender.anchored(me, 3, 9)).unwrap(),
        Some(record_hash)
    );
    let found = rt
        .block_on(w.client(None).find_anchor(3, 9, record_hash))
        .unwrap()
        .expect("found by a reader with no key");
    assert_eq!(found.anchorer, me);
    assert_eq!(found.record, record);
    assert!(
        rt.block_on(sender.find_anchor(3, 10, record_hash))
            .unwrap()
            .is_none()
    );

    // The same anchor again is a no-op; another record for the same slot is refused for good.
    outbox.push(&anchor).unwrap();
    w.drain(&sender, &outbox);
    let other = vec![8u8; 301];
    outbox
        .push(&Submission::Anchor {
            subnet: 3,
            epoch: 9,
            record_hash: *blake3::hash(&other).as_bytes(),
            record: other,
        })
        .unwrap();
    let report = rt.block_on(sender.flush(&outbox)).unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(outbox.is_empty().unwrap());
    assert_eq!(
        rt.block_on(sender.anchored(me, 3, 9)).unwrap(),
        Some(record_hash)
    );
}

#[test]
fn the_outbox_refuses_what_the_contract_would() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    assert!(outbox.push(&Submission::Transaction(vec![])).is_err());
    assert!(
        outbox
            .push(&Submission::Transaction(vec![1; 9000]))
            .is_err()
    );
    assert!(
        outbox
            .push(&Submission::Anchor {
                subnet: 1,
                epoch: 1,
                record_hash: [0; 32],
                record: vec![1],
            })
            .is_err()
    );
    assert!(outbox.is_empty().unwrap());
    // A damaged item is reported by name, never dropped silently.
    outbox
        .push(&Submission::Transaction(vec![1, 2, 3]))
        .unwrap();
    let item = outbox.pending().unwrap().remove(0);
    let mut bytes = std::fs::read(&item.path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&item.path, bytes).unwrap();
    assert!(matches!(outbox.pending(), Err(ChainError::BadItem { .. })));
}
