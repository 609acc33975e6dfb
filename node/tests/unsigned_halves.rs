#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Credit and halves never countersigned: a real `agora serve` (MiniLM at 1,000 units a query, a
//! credit limit of 3,000) and a client (an overlay node in this process) that takes answers and
//! never countersigns them, as if none of them had reached it.
//!
//! Promises checked:
//! - while their queries' deadlines have not passed, the provider's unsigned halves count: after
//!   three answers the fourth query is refused `OverBudget`;
//! - once those deadlines have passed they stop counting: the client is answered again;
//! - what is forgiven is at most one credit limit: after three more answers, refused again, and
//!   still refused after their deadlines pass too (a client that never countersigns gets at most
//!   twice the credit limit);
//! - a countersignature counts again: the provider stores it, and the client stays refused.
//!
//! No timing thresholds (the test waits for deadlines it chose to pass).

mod common;

use agora_overlay::{Client, Config, Multiaddr, OverlayError, PeerId, now_ms};
use agora_protocols::{
    ContentId, EmbedInput, Payload, QueryErrorKind, QueryRequest, Receipt, SecretKey, Signed, Task,
};
use common::Proc;
use std::path::Path;
use std::time::Duration;

const MODEL: &str = "all-minilm-l6-v2";
/// How long each query's deadline is: the answer comes well within it, and then it passes.
const DEADLINE_MS: u64 = 4_000;

fn request(key: &SecretKey, nonce: u64, deadline_ms: u64) -> Signed<QueryRequest> {
    let input = EmbedInput {
        texts: vec![format!("unsigned {nonce}")],
    }
    .to_bytes()
    .unwrap();
    let mut id = key.public().to_bytes().to_vec();
    id.extend_from_slice(&nonce.to_le_bytes());
    Signed::sign(
        QueryRequest {
            query_id: ContentId::of_payload(&id),
            subnet: 1,
            task: Task::Embed,
            model: MODEL.to_string(),
            input,
            max_price: 1_000_000,
            nonce,
            sent_at_ms: now_ms(),
            deadline_ms,
        },
        key,
    )
    .unwrap()
}

/// Asks `n` queries due by `deadline_ms`; returns the answers' receipts, or the refusal that
/// stopped them.
async fn ask(
    client: &Client,
    key: &SecretKey,
    provider: PeerId,
    nonce: &mut u64,
    n: usize,
    deadline_ms: u64,
) -> Result<Vec<Receipt>, QueryErrorKind> {
    let mut receipts = Vec::new();
    for _ in 0..n {
        *nonce += 1;
        match client
            .query(provider, request(key, *nonce, deadline_ms))
            .await
        {
            // Never countersigned: the provider keeps only its half. (The countersigned form is
            // built here only to be able to settle one of them later.)
            Ok(answer) => receipts.push(answer.receipt.countersign(key).unwrap()),
            Err(OverlayError::Refused(e)) => return Err(e.kind),
            Err(e) => panic!("query failed: {e}"),
        }
    }
    Ok(receipts)
}

/// Sleeps until `deadline_ms` (our clock, the provider's too: one machine) has passed.
fn wait_past(deadline_ms: u64) {
    let now = now_ms();
    if now <= deadline_ms {
        std::thread::sleep(Duration::from_millis(deadline_ms - now + 200));
    }
}

#[test]
fn unsigned_halves_stop_counting_after_their_deadline_up_to_one_credit_limit() {
    let serve = Proc::start(
        "serve",
        Path::new(env!("CARGO_BIN_EXE_agora")),
        &[
            "serve",
            "--ephemeral-key",
            "--loopback",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--model",
            MODEL,
            "--price",
            &format!("{MODEL}=1000"),
            "--credit-limit",
            "3000",
        ],
    );
    let (mut peer, mut listen) = (None::<PeerId>, None::<Multiaddr>);
    serve.wait_for("ready", |l| {
        let l = l.trim();
        if let Some(p) = l.strip_prefix("peer ") {
            peer = Some(p.parse().unwrap());
        } else if let Some(a) = l.strip_prefix("listen ") {
            listen.get_or_insert_with(|| a.parse().unwrap());
        }
        (l == "ready").then_some(())
    });
    let (provider, listen) = (peer.unwrap(), listen.unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = SecretKey::generate();
    let client = rt.block_on(async {
        let (client, mut events) = agora_overlay::spawn(&key, Config::loopback(), None).unwrap();
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        common::connect_to(&client, provider, &listen).await;
        client
    });
    let mut nonce = now_ms() * 1000;

    // Three answers use the credit; their halves count until their deadline.
    let first_deadline = now_ms() + DEADLINE_MS;
    let first = rt
        .block_on(ask(&client, &key, provider, &mut nonce, 3, first_deadline))
        .unwrap();
    let refused = rt.block_on(ask(
        &client,
        &key,
        provider,
        &mut nonce,
        1,
        now_ms() + 60_000,
    ));
    assert_eq!(refused.unwrap_err(), QueryErrorKind::OverBudget);

    // Past their deadline they stop counting: three more answers.
    wait_past(first_deadline);
    let second_deadline = now_ms() + DEADLINE_MS;
    let second = rt
        .block_on(ask(&client, &key, provider, &mut nonce, 3, second_deadline))
        .unwrap();
    let refused = rt.block_on(ask(
        &client,
        &key,
        provider,
        &mut nonce,
        1,
        now_ms() + 60_000,
    ));
    assert_eq!(refused.unwrap_err(), QueryErrorKind::OverBudget);

    // At most one credit limit is forgiven: still refused when the second three are stale too.
    wait_past(second_deadline);
    let refused = rt.block_on(ask(
        &client,
        &key,
        provider,
        &mut nonce,
        1,
        now_ms() + 60_000,
    ));
    assert_eq!(
        refused.unwrap_err(),
        QueryErrorKind::OverBudget,
        "a client that never countersigns got more than twice the credit limit"
    );

    // A countersignature is stored and counts as owed: still refused.
    let new = rt
        .block_on(client.settle(provider, first[0].clone()))
        .unwrap();
    assert!(new);
    let refused = rt.block_on(ask(
        &client,
        &key,
        provider,
        &mut nonce,
        1,
        now_ms() + 60_000,
    ));
    assert_eq!(refused.unwrap_err(), QueryErrorKind::OverBudget);
    println!(
        "unsigned halves: credit limit 3000, price 1000; {} answers before the first deadline, \
         {} more after it, then refused OverBudget for good (forgiven at most one credit limit)",
        first.len(),
        second.len()
    );
}
