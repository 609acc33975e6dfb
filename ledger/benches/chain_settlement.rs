//! The chain side of the ledger, measured against baselines from the same run:
//!
//! 1. Ledger transactions per second end to end through anvil (queued durably in the outbox,
//!    sent, mined, final, mirrored by the follower, replayed into the state), against the same
//!    transactions sent as bare contract calls (the chain's own floor) and through the local file
//!    log (no chain at all).
//! 2. Receipts settled per second at an epoch's end (the fold into an anchor record: read,
//!    verify, Merkle root, claim), against only reading (and so verifying) the same receipts.
//! 3. Gas per anchored epoch, for epochs of very different receipt counts: it must not grow.
//!
//! `cargo bench -p agora-ledger --bench chain_settlement` (needs anvil: scripts/setup-tools).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agora_ledger::anchor::build_anchor;
use agora_ledger::balances::Genesis;
use agora_ledger::chain::anvil::{Anvil, DEV_KEYS, default_binary};
use agora_ledger::chain::{
    AgoraLedger, ChainClient, ChainConfig, Follower, Outbox, Submission, deploy,
};
use agora_ledger::log::{LocalLog, replay};
use agora_ledger::state::tx::{Call, sign_tx};
use agora_ledger::state::{GenesisSubnet, Hyperparameters, LedgerGenesis, LedgerParams};
use agora_ledger::store::ReceiptStore;
use agora_protocols::{ContentId, ProviderReceipt, Receipt, ReceiptBody, SecretKey, Task};
use alloy::network::EthereumWallet;
use alloy::primitives::{Bytes, FixedBytes};
use alloy::providers::ProviderBuilder;
use std::time::{Duration, Instant};

const TXS: u64 = 300;

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i; 32])
}

fn transfers(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            sign_tx(
                &key(1),
                i + 1,
                Call::Transfer {
                    to: key(2).public(),
                    amount: 1 + i,
                },
            )
            .unwrap()
            .to_bytes()
            .unwrap()
        })
        .collect()
}

fn genesis() -> LedgerGenesis {
    LedgerGenesis::new(
        Genesis::new([(key(1).public(), 1_000_000_000_000)].into_iter().collect()).unwrap(),
        LedgerParams::default(),
        vec![GenesisSubnet {
            owner: key(1).public(),
            hyperparameters: Hyperparameters {
                tempo: 20,
                ..Hyperparameters::default()
            },
        }],
    )
    .unwrap()
}

fn receipt(n: u64) -> Receipt {
    let body = ReceiptBody {
        version: agora_protocols::receipt::RECEIPT_VERSION,
        query_id: ContentId::of_payload(&n.to_le_bytes()),
        subnet: 1,
        task: Task::Embed,
        model: "all-minilm-l6-v2".into(),
        input_hash: ContentId::of_payload(b"in"),
        output_hash: ContentId::of_payload(b"out"),
        price: 1_000,
        client: key(2).public(),
        provider: key(3).public(),
        nonce: n,
        requested_at_ms: 1_700_000_000_000,
        answered_at_ms: 1_700_000_000_010,
    };
    ProviderReceipt::sign(body, &key(3))
        .unwrap()
        .countersign(&key(2))
        .unwrap()
}

/// A provider sending from anvil's third development account (the bench's own contract calls).
fn sender(anvil: &Anvil) -> impl alloy::providers::Provider + Clone {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(
            DEV_KEYS[2]
                .parse::<alloy::signers::local::PrivateKeySigner>()
                .unwrap(),
        ))
        .connect_http(anvil.url().parse().unwrap())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let anvil = Anvil::start(&default_binary().unwrap(), dir.path(), None).unwrap();
    let (contract, start) = rt
        .block_on(deploy(
            &anvil.url(),
            DEV_KEYS[0].parse().unwrap(),
            Duration::from_secs(30),
        ))
        .unwrap();
    let txs = transfers(TXS);

    // -- 1a. bare contract calls: send all, wait for every receipt --------------------------------
    let bare = rt.block_on(async {
        let provider = sender(&anvil);
        let c = AgoraLedger::new(contract, &provider);
        let t = Instant::now();
        let mut pending = Vec::new();
        for tx in &txs {
            pending.push(c.submit(Bytes::copy_from_slice(tx)).send().await.unwrap());
        }
        for p in pending {
            p.get_receipt().await.unwrap();
        }
        t.elapsed()
    });

    // -- 1b. Agora end to end through the chain ---------------------------------------------------
    let mut config = ChainConfig::new(anvil.url(), contract, start);
    config.depth = 2;
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    let mirror = dir.path().join("mirror.log");
    let (through_chain, height) = rt.block_on(async {
        let client = ChainClient::connect(config.clone(), Some(DEV_KEYS[1].parse().unwrap()))
            .await
            .unwrap();
        let follower = Follower::new(client.clone(), &mirror);
        // The bare calls above are on this chain too: mirror them first, outside the timing.
        anvil.mine(2).await.unwrap();
        follower.sync().await.unwrap();
        let t = Instant::now();
        for tx in &txs {
            outbox.push(&Submission::Transaction(tx.clone())).unwrap();
        }
        while !outbox.is_empty().unwrap() {
            client.flush(&outbox).await.unwrap();
            anvil.mine(1).await.unwrap();
        }
        follower.sync().await.unwrap();
        let mut log = LocalLog::open_read_only(&mirror).unwrap();
        let (state, _, report) = replay(&mut log, genesis().to_state()).unwrap();
        assert_eq!(state.nonce(&key(1).public()), Some(TXS));
        assert_eq!(
            report.refused.len() as u64,
            TXS,
            "the bare copies are refused as replays"
        );
        (t.elapsed(), state.height())
    });

    // -- 1c. the local file log, no chain ------------------------------------------------------------
    let local = {
        let path = dir.path().join("local.log");
        let t = Instant::now();
        let mut log = LocalLog::open(&path).unwrap();
        for tx in &txs {
            log.append_block(&[tx]).unwrap();
        }
        let (state, _, _) = replay(&mut log, genesis().to_state()).unwrap();
        assert_eq!(state.nonce(&key(1).public()), Some(TXS));
        t.elapsed()
    };
    let rate = |d: Duration| TXS as f64 / d.as_secs_f64();
    println!("ledger transactions end to end ({TXS} signed transfers, anvil automining)");
    println!("| path | time | tx/s | vs bare contract calls |");
    println!("|---|---|---|---|");
    for (name, d) in [
        ("bare contract calls (send all, wait all receipts)", bare),
        (
            "Agora through the chain (outbox, send, final at depth 2, mirror, replay)",
            through_chain,
        ),
        ("Agora on the local file log (append, fsync, replay)", local),
    ] {
        println!(
            "| {name} | {:.0} ms | {:.0} | {:.2}x |",
            d.as_secs_f64() * 1e3,
            rate(d),
            rate(d) / rate(bare)
        );
    }
    println!("(mirror height after the run: {height} ledger blocks)\n");

    // -- 2. receipts settled per second ------------------------------------------------------------
    println!("receipts settled at an epoch's end");
    println!(
        "| receipts | read + verify only | fold into the anchor | receipts/s folded | ratio |"
    );
    println!("|---|---|---|---|---|");
    let mut state = genesis().to_state();
    let window = agora_ledger::anchor::epoch_window(&state, 1, 1).unwrap();
    while state.height() < window.end_block - 1 {
        let h = state.height() + 1;
        state.apply_block(h, &[]).unwrap();
    }
    let mut gas = Vec::new();
    for n in [100u64, 2_000] {
        let store_dir = tempfile::tempdir().unwrap();
        let store = ReceiptStore::open(&store_dir.path().join("r.redb")).unwrap();
        let receipts: Vec<Receipt> = (0..n).map(receipt).collect();
        for chunk in receipts.chunks(500) {
            let entries: Vec<_> = chunk
                .iter()
                .map(|r| agora_ledger::store::Entry::Full(r.clone()))
                .collect();
            store.put_many(&entries).unwrap();
        }
        let t = Instant::now();
        // The store verifies both signatures of every row it decodes.
        let all = store.all().unwrap();
        assert_eq!(all.len() as u64, n);
        let floor = t.elapsed();
        let t = Instant::now();
        let settled = build_anchor(&store, &state, 1, 1, &key(4), [0; 32]).unwrap();
        let fold = t.elapsed();
        assert_eq!(settled.anchor.record().receipt_count, n);
        println!(
            "| {n} | {:.1} ms | {:.1} ms | {:.0} | {:.2}x |",
            floor.as_secs_f64() * 1e3,
            fold.as_secs_f64() * 1e3,
            n as f64 / fold.as_secs_f64(),
            fold.as_secs_f64() / floor.as_secs_f64()
        );
        gas.push((n, settled.anchor));
    }

    // -- 3. gas per anchored epoch --------------------------------------------------------------------
    println!("\ngas per anchored epoch");
    println!("| receipts in the epoch | record bytes | gas used |");
    println!("|---|---|---|");
    rt.block_on(async {
        let provider = sender(&anvil);
        let c = AgoraLedger::new(contract, &provider);
        for (i, (n, anchor)) in gas.iter().enumerate() {
            let r = anchor.record();
            let receipt = c
                .anchor(
                    r.subnet,
                    r.epoch + i as u64,
                    FixedBytes(anchor.hash()),
                    Bytes::copy_from_slice(anchor.to_bytes()),
                )
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
            println!(
                "| {n} | {} | {} |",
                anchor.to_bytes().len(),
                receipt.gas_used
            );
        }
    });
}
