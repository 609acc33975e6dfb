//! Ledger transactions applied per second, as a ratio to only decoding and verifying them.
//!
//! Every node checks every transaction's signature, so decode + ed25519 verification is the floor
//! for any state machine over signed transactions; the ratio says what the state machine adds on
//! top. Both timings come from the same run (DESIGN.md, "Targets").
//!
//! The mix: transfers among 16 coldkeys, stake moves to 16 registered hotkeys, and those hotkeys'
//! weight sets on one subnet (tempo 100, so epochs with Yuma run during the run), in blocks of 200.
//!
//! Run with `cargo bench -p agora-ledger --bench ledger_apply`; prints a markdown table.

use agora_ledger::balances::{Genesis, UNITS_PER_TOKEN};
use agora_ledger::state::{
    Call, GenesisSubnet, Hyperparameters, LedgerGenesis, LedgerParams, LedgerState, decode_tx,
    hotkey_binding_proof, sign_tx,
};
use agora_protocols::SecretKey;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

const COLD: u8 = 16;
const BLOCK: usize = 200;
const BLOCKS: usize = 100;

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i; 32])
}

/// A state with 16 hotkeys registered, and the blocks of the run as envelope bytes.
fn setup() -> Option<(LedgerState, Vec<Vec<Vec<u8>>>)> {
    let colds: Vec<SecretKey> = (1..=COLD).map(key).collect();
    let hots: Vec<SecretKey> = (101..101 + COLD).map(key).collect();
    let accounts = colds
        .iter()
        .map(|k| (k.public(), 1_000_000 * UNITS_PER_TOKEN))
        .collect();
    let hyper = Hyperparameters {
        tempo: 100,
        max_allowed_uids: 64,
        commit_reveal_enabled: false,
        weights_set_rate_limit: 0,
        ..Hyperparameters::default()
    };
    let mut state = LedgerGenesis::new(
        Genesis::new(accounts).ok()?,
        LedgerParams::default(),
        vec![GenesisSubnet {
            owner: colds[0].public(),
            hyperparameters: hyper,
        }],
    )
    .ok()?
    .to_state();
    let mut nonces: BTreeMap<u8, u64> = BTreeMap::new();
    let mut next = |i: u8| {
        let n = nonces.entry(i).or_insert(0);
        *n += 1;
        *n
    };
    let mut setup = Vec::new();
    for (i, (c, h)) in colds.iter().zip(&hots).enumerate() {
        let ci = i as u8;
        let proof = hotkey_binding_proof(h, &c.public());
        let associate = Call::AssociateHotkey {
            hotkey: h.public(),
            proof,
        };
        setup.push(sign_tx(c, next(ci), associate).ok()?);
        let register = Call::Register {
            netuid: 1,
            hotkey: h.public(),
        };
        setup.push(sign_tx(c, next(ci), register).ok()?);
    }
    let results = state.apply_block(1, &setup).ok()?;
    if results.iter().any(Result::is_err) {
        return None;
    }
    let mut hot_nonces = [0u64; COLD as usize];
    let mut blocks = Vec::with_capacity(BLOCKS);
    for b in 0..BLOCKS {
        let mut txs = Vec::with_capacity(BLOCK);
        for t in 0..BLOCK {
            let i = (b * BLOCK + t) % usize::from(COLD);
            let ci = i as u8;
            let (c, h) = (&colds[i], &hots[i]);
            let tx = match t % 4 {
                0 | 1 => sign_tx(
                    c,
                    next(ci),
                    Call::Transfer {
                        to: colds[(i + 1) % usize::from(COLD)].public(),
                        amount: 1_000,
                    },
                ),
                2 => sign_tx(
                    c,
                    next(ci),
                    Call::AddStake {
                        hotkey: hots[(i + b) % usize::from(COLD)].public(),
                        amount: UNITS_PER_TOKEN,
                    },
                ),
                _ => {
                    hot_nonces[i] += 1;
                    let uids: Vec<u16> = (0..u16::from(COLD)).collect();
                    let weights = uids.iter().map(|u| 1 + (u * 7 + b as u16) % 100).collect();
                    sign_tx(
                        h,
                        hot_nonces[i],
                        Call::SetWeights {
                            netuid: 1,
                            uids,
                            weights,
                        },
                    )
                }
            };
            txs.push(tx.ok()?.to_bytes().ok()?);
        }
        blocks.push(txs);
    }
    Some((state, blocks))
}

fn best_of<F: FnMut() -> usize>(runs: usize, mut f: F) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut count = 0;
    for _ in 0..runs {
        let t = Instant::now();
        count = black_box(f());
        best = best.min(t.elapsed());
    }
    (best, count)
}

fn main() {
    let Some((state, blocks)) = setup() else {
        println!("setup failed");
        return;
    };
    let total = BLOCKS * BLOCK;
    let (verify, verified) = best_of(3, || {
        blocks
            .iter()
            .flatten()
            .filter(|b| decode_tx(b).is_ok())
            .count()
    });
    let (apply, accepted) = best_of(3, || {
        let mut s = state.clone();
        let mut ok = 0;
        for (i, txs) in blocks.iter().enumerate() {
            if let Ok(results) = s.apply_block_bytes(i as u64 + 2, txs) {
                ok += results.iter().filter(|r| r.is_ok()).count();
            }
        }
        black_box(s.state_root().ok());
        ok
    });
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!(
        "{total} transactions in {BLOCKS} blocks of {BLOCK}; {accepted} accepted, {verified} verified"
    );
    println!();
    println!("| pass | time | tx/s | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| decode + verify only (baseline) | {:.1} ms | {:.0} | 1.00x |",
        verify.as_secs_f64() * 1e3,
        rate(verify)
    );
    println!(
        "| apply_block_bytes (verify + state machine + epochs) | {:.1} ms | {:.0} | {:.2}x |",
        apply.as_secs_f64() * 1e3,
        rate(apply),
        apply.as_secs_f64() / verify.as_secs_f64()
    );
}
