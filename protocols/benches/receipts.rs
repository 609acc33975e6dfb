//! Receipt and Merkle throughput against their bare primitives, measured in the same run.
//!
//! `cargo bench -p agora-protocols --bench receipts` prints a table. Baseline and ours run
//! alternately, round after round, and the ratio is the median of the per-round ratios, so load from
//! elsewhere on a noisy machine hits both sides alike.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use agora_protocols::merkle::MerkleTree;
use agora_protocols::receipt::{ProviderReceipt, RECEIPT_VERSION, Receipt};
use agora_protocols::{ContentId, ReceiptBody, SecretKey, Task};
use ed25519_dalek::{Signer, Verifier};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn time<F: FnMut()>(f: &mut F) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Median wall time of `rounds` runs of `f`.
fn median<F: FnMut()>(rounds: usize, mut f: F) -> Duration {
    let mut times: Vec<Duration> = (0..rounds).map(|_| time(&mut f)).collect();
    times.sort();
    times[rounds / 2]
}

/// Runs `baseline` and `ours` alternately; returns their median times and the median of the
/// per-round ratios ours / baseline.
fn paired<A: FnMut(), B: FnMut()>(
    rounds: usize,
    mut baseline: A,
    mut ours: B,
) -> (Duration, Duration, f64) {
    let mut base_times = Vec::new();
    let mut our_times = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let b = time(&mut baseline);
        let o = time(&mut ours);
        ratios.push(o.as_secs_f64() / b.as_secs_f64());
        base_times.push(b);
        our_times.push(o);
    }
    base_times.sort();
    our_times.sort();
    ratios.sort_by(f64::total_cmp);
    (
        base_times[rounds / 2],
        our_times[rounds / 2],
        ratios[rounds / 2],
    )
}

fn body(client: &SecretKey, provider: &SecretKey, nonce: u64) -> ReceiptBody {
    ReceiptBody {
        version: RECEIPT_VERSION,
        query_id: ContentId::of_payload(&nonce.to_le_bytes()),
        subnet: 1,
        task: Task::Embed,
        model: "all-minilm-l6-v2".to_string(),
        input_hash: ContentId::of_payload(b"input"),
        output_hash: ContentId::of_payload(b"output"),
        price: 1_000_000,
        client: client.public(),
        provider: provider.public(),
        nonce,
        requested_at_ms: 1_764_000_000_000,
        answered_at_ms: 1_764_000_000_010,
    }
}

fn main() {
    let per_round = 2_000u64;
    let rounds = 15;
    let client = SecretKey::from_seed(&[1; 32]);
    let provider = SecretKey::from_seed(&[2; 32]);
    let client_dalek = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let provider_dalek = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
    let sample_len = body(&client, &provider, 0).to_bytes().unwrap().len();

    // Baseline: the same cryptographic work with bare ed25519-dalek on a message of the body's size:
    // provider signs, client verifies and countersigns, a third party verifies both.
    let message = vec![7u8; sample_len];
    let (bare, ours, receipt_ratio) = paired(
        rounds,
        || {
            for i in 0..per_round {
                let mut m = message.clone();
                m[..8].copy_from_slice(&i.to_le_bytes());
                let ps = provider_dalek.sign(&m);
                provider_dalek
                    .verifying_key()
                    .verify_strict(&m, &ps)
                    .unwrap();
                let mut cm = m.clone();
                cm.extend_from_slice(&ps.to_bytes());
                let cs = client_dalek.sign(&cm);
                provider_dalek
                    .verifying_key()
                    .verify_strict(&m, &ps)
                    .unwrap();
                client_dalek.verifying_key().verify(&cm, &cs).unwrap();
                black_box(cs);
            }
        },
        // Ours: build the body, provider signs, the half travels as bytes, the client checks and
        // countersigns, the full receipt travels as bytes and is checked whole.
        || {
            for i in 0..per_round {
                let half = ProviderReceipt::sign(body(&client, &provider, i), &provider).unwrap();
                let half = ProviderReceipt::from_bytes(&half.to_bytes().unwrap()).unwrap();
                let receipt = half.countersign(&client).unwrap();
                let checked = Receipt::from_bytes(&receipt.to_bytes().unwrap()).unwrap();
                black_box(checked.id());
            }
        },
    );

    // Merkle root over 1,000,000 receipt ids against plain blake3 over the same 32 MB.
    let n = 1_000_000u64;
    let ids: Vec<[u8; 32]> = (0..n)
        .map(|i| ContentId::derive("bench", &i.to_le_bytes()).0)
        .collect();
    let flat = ids.as_flattened().to_vec();
    let mut inputs: Vec<Vec<[u8; 32]>> = (0..rounds).map(|_| ids.clone()).collect();
    let (plain, merkle, merkle_ratio) = paired(
        rounds,
        || {
            black_box(blake3::hash(black_box(&flat)));
        },
        || {
            let leaves = inputs.pop().unwrap_or_default();
            black_box(MerkleTree::new(leaves).root());
        },
    );
    let tree = MerkleTree::new(ids.clone());
    let prove = median(rounds, || {
        for i in (0..n as usize).step_by(10_007) {
            black_box(tree.prove(i));
        }
    });
    let proofs = (0..n as usize).step_by(10_007).count() as f64;
    let proof = tree.prove(777_777).unwrap();
    let verify = median(rounds, || {
        for _ in 0..1000 {
            proof.verify(&tree.root(), &ids[777_777]).unwrap();
        }
    });

    let per_sec = |d: Duration, count: f64| count / d.as_secs_f64();
    println!("| benchmark | baseline | ours | ratio (ours time / baseline time) |");
    println!("|---|---|---|---|");
    println!(
        "| receipt create+sign+verify (2 signs, 3 verifies) | bare ed25519-dalek: {:.0}/s | {:.0}/s | {:.2}x |",
        per_sec(bare, per_round as f64),
        per_sec(ours, per_round as f64),
        receipt_ratio
    );
    println!(
        "| Merkle root over 1,000,000 receipt ids | plain blake3 over the 32 MB: {:.1} ms | {:.1} ms | {:.2}x |",
        plain.as_secs_f64() * 1e3,
        merkle.as_secs_f64() * 1e3,
        merkle_ratio
    );
    println!(
        "| inclusion proof, 1M leaves: make / check | | {:.1} us / {:.1} us ({} bytes) | |",
        prove.as_secs_f64() * 1e6 / proofs,
        verify.as_secs_f64() * 1e6 / 1000.0,
        proof.to_bytes().unwrap().len()
    );
}
