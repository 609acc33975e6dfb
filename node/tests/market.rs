//! The marketplace end to end, with real processes on 127.0.0.1: an `agora-bootstrap`, two miners
//! (`agora serve`) with the real models, and a client.
//!
//! Promises checked:
//! - a provider killed mid-query leads to failover to the other, and afterwards exactly one receipt
//!   exists for the query, at the client and countersigned at the provider that answered: none lost,
//!   none counted twice; the balances recomputed from the receipts charge the client once;
//! - redundant queries go to distinct providers and agree (embeddings by cosine, greedy tokens);
//! - the OpenAI-compatible gateway, as its own process, answers the official `openai` Python client
//!   through the mesh.
//!
//! No timing thresholds: waits poll under one generous deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use agora::market::client::{ClientConfig, MarketClient, Mode};
use agora_ledger::balances::{Balances, Genesis};
use agora_ledger::store::{ListFilter, ReceiptStore, ReceiptWriter};
use agora_overlay::{Config, PeerId};
use agora_protocols::{ChatMessage, EmbedInput, GenerateInput, Sampling, SecretKey, Task};
use common::{DEADLINE, Proc, start_bootstrap, venv_python};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MINILM: &str = "all-minilm-l6-v2";
const SMOLLM2: &str = "smollm2-135m-instruct";

struct Miner {
    proc: Proc,
    peer: PeerId,
    receipts: PathBuf,
}

fn start_miner(dir: &Path, name: &str, boot: &str, price: u64) -> Miner {
    let receipts = dir.join(format!("{name}.redb"));
    let agora = PathBuf::from(env!("CARGO_BIN_EXE_agora"));
    let price_embed = format!("{MINILM}={price}");
    let price_chat = format!("{SMOLLM2}={}", price * 10);
    let proc = Proc::start(
        name,
        &agora,
        &[
            "serve",
            "--ephemeral-key",
            "--loopback",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            boot,
            "--receipts",
            receipts.to_str().unwrap(),
            "--model",
            MINILM,
            "--model",
            SMOLLM2,
            "--price",
            &price_embed,
            "--price",
            &price_chat,
        ],
    );
    let peer = proc.wait_for("its peer id", |l| {
        l.strip_prefix("peer ")
            .map(|p| p.trim().parse::<PeerId>().unwrap())
    });
    proc.wait_for("ready", |l| (l.trim() == "ready").then_some(()));
    Miner {
        proc,
        peer,
        receipts,
    }
}

fn store_receipts(path: &Path) -> Vec<agora_protocols::Receipt> {
    receipts_in(&ReceiptStore::open(path).unwrap())
}

fn receipts_in(store: &ReceiptStore) -> Vec<agora_protocols::Receipt> {
    store
        .list(&ListFilter {
            limit: 10_000,
            ..ListFilter::default()
        })
        .unwrap()
        .iter()
        .filter_map(|r| r.as_receipt().cloned())
        .collect()
}

async fn wait_for_providers(client: &MarketClient, task: Task, model: &str, n: usize) {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Ok(ranked) = client.ranked_providers(task, model).await
            && ranked.len() >= n
        {
            return;
        }
        assert!(Instant::now() < end, "never saw {n} providers of {model}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_redundancy_and_the_gateway_through_the_mesh() {
    let tmp = tempfile::tempdir().unwrap();
    let (_boot, boot_addr) = start_bootstrap(tmp.path());
    // The cheap miner is the policy's first choice; it is the one killed mid-query.
    let mut cheap = start_miner(tmp.path(), "cheap", &boot_addr, 1_000);
    let mut dear = start_miner(tmp.path(), "dear", &boot_addr, 5_000);

    let key = SecretKey::generate();
    let client_store_path = tmp.path().join("client.redb");
    let store = ReceiptStore::open(&client_store_path).unwrap();
    let writer = ReceiptWriter::spawn(store.clone(), 64);
    let (overlay, _events) = agora_overlay::spawn(
        &key,
        Config {
            bootstrap: vec![boot_addr.parse().unwrap()],
            ..Config::loopback()
        },
        None,
    )
    .unwrap();
    let client = MarketClient::new(
        key.clone(),
        overlay,
        store,
        writer.clone(),
        ClientConfig {
            deadline: Duration::from_secs(240),
            ..ClientConfig::default()
        },
    );
    wait_for_providers(&client, Task::Embed, MINILM, 2).await;
    wait_for_providers(&client, Task::Generate, SMOLLM2, 2).await;

    // Redundancy: two providers, the same greedy tokens and the same vectors.
    let input = EmbedInput {
        texts: vec![
            "Receipts are signed by both sides.".into(),
            "Die Katze schläft.".into(),
        ],
    };
    let r = client.embed_redundant(MINILM, &input, 2).await.unwrap();
    let (answers, agreement) = (r.answers, r.agreement);
    assert_eq!(answers.len(), 2, "{:?}", r.failures);
    assert_ne!(answers[0].provider, answers[1].provider);
    assert!(agreement.agrees(), "{agreement:?}");
    assert_eq!(answers[0].output.dimension, 384);
    let chat = GenerateInput {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Name three colours of the rainbow.".into(),
        }],
        max_tokens: 12,
        sampling: Sampling::Greedy,
        stop: Vec::new(),
    };
    let r = client.generate_redundant(SMOLLM2, &chat, 2).await.unwrap();
    let (answers, agreement) = (r.answers, r.agreement);
    assert_eq!(answers.len(), 2, "{:?}", r.failures);
    assert!(agreement.agrees(), "{agreement:?}");
    assert!(!answers[0].output.text.is_empty());

    // Open mode: a second client announces on gossip, the providers offer, the cheapest wins.
    let open_key = SecretKey::generate();
    let open_public = open_key.public();
    let (open_overlay, _open_events) = agora_overlay::spawn(
        &open_key,
        Config {
            bootstrap: vec![boot_addr.parse().unwrap()],
            ..Config::loopback()
        },
        None,
    )
    .unwrap();
    let open_client = MarketClient::new(
        open_key,
        open_overlay,
        client.store().clone(),
        writer.clone(),
        ClientConfig {
            mode: Mode::Open,
            deadline: Duration::from_secs(240),
            ..ClientConfig::default()
        },
    );
    wait_for_providers(&open_client, Task::Embed, MINILM, 2).await;
    // Offers go to announcers the providers' gossip mesh reaches: retry until it has formed.
    let end = Instant::now() + DEADLINE;
    let open = loop {
        match open_client.embed(MINILM, &input).await {
            Ok(settled) => break settled,
            Err(e) => {
                assert!(Instant::now() < end, "open mode never got an offer: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(open.provider, cheap.peer, "the cheapest offer wins");
    assert!(open.receipt.verify().is_ok());

    let before = receipts_in(client.store()).len();
    assert_eq!(before, 5);

    // Failover: freeze the cheap miner so the query sits at it, then kill it mid-query.
    let ranked = client.ranked_providers(Task::Embed, MINILM).await.unwrap();
    let first_choice = ranked[0].peer;
    let (victim, survivor) = if first_choice == cheap.peer {
        (&mut cheap, &mut dear)
    } else {
        (&mut dear, &mut cheap)
    };
    victim.proc.signal("STOP");
    let query = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .embed(
                    MINILM,
                    &EmbedInput {
                        texts: vec!["a query whose first provider dies".into()],
                    },
                )
                .await
        })
    };
    // Once the query is in flight at the victim, kill it.
    let end = Instant::now() + DEADLINE;
    while !client
        .standings()
        .iter()
        .any(|s| s.peer == victim.peer && s.in_flight >= 1)
    {
        assert!(
            Instant::now() < end,
            "the query never went to the first choice"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.proc.signal("KILL");
    let settled = query.await.unwrap().unwrap();
    assert_eq!(settled.provider, survivor.peer);
    assert!(
        settled
            .failed_attempts
            .iter()
            .any(|a| a.provider == victim.peer),
        "{:?}",
        settled.failed_attempts
    );

    // Exactly one new receipt at the client, countersigned at the survivor; none at the victim.
    assert_eq!(
        client.flush_settlements(Duration::from_secs(60)).await,
        0,
        "every countersignature was acknowledged"
    );
    writer.close().await;
    survivor.proc.terminate();
    let _ = victim.proc.child.wait();
    let client_receipts = receipts_in(client.store());
    assert_eq!(client_receipts.len(), before + 1);
    let new: Vec<_> = client_receipts
        .iter()
        .filter(|r| r.id() == settled.receipt.id())
        .collect();
    assert_eq!(new.len(), 1);
    let at_survivor = store_receipts(&survivor.receipts);
    assert!(at_survivor.iter().any(|r| r.id() == settled.receipt.id()));
    let at_victim = ReceiptStore::open(&victim.receipts).unwrap();
    assert!(
        !at_victim
            .contains_query(&key.public(), &settled.receipt.body().query_id)
            .unwrap(),
        "the killed provider holds a receipt for the query it never answered"
    );

    // Balances from the receipts: the client paid each receipt once.
    let genesis = Genesis::new(BTreeMap::from([
        (key.public(), 1_000_000_000),
        (open_public, 1_000_000_000),
    ]))
    .unwrap();
    let balances = Balances::compute(&genesis, client_receipts.iter()).unwrap();
    let paid: u64 = client_receipts
        .iter()
        .filter(|r| r.body().client == key.public())
        .map(|r| r.body().price)
        .sum();
    assert_eq!(balances.get(&key.public()).paid, paid);
    assert_eq!(balances.get(&key.public()).balance, 1_000_000_000 - paid);
}

#[test]
fn client_processes_gateway_and_query_buy_answers_through_the_mesh() {
    let python = venv_python();
    let tmp = tempfile::tempdir().unwrap();
    let (_boot, boot_addr) = start_bootstrap(tmp.path());
    let _miner = start_miner(tmp.path(), "miner", &boot_addr, 1_000);
    let receipts = tmp.path().join("gateway.redb");
    let gateway = Proc::start(
        "gateway",
        &PathBuf::from(env!("CARGO_BIN_EXE_agora")),
        &[
            "gateway",
            "--ephemeral-key",
            "--loopback",
            "--listen",
            "127.0.0.1:0",
            "--bootstrap",
            &boot_addr,
            "--receipts",
            receipts.to_str().unwrap(),
        ],
    );
    let base = gateway.wait_for("its address", |l| {
        l.strip_prefix("gateway ").map(|s| s.trim().to_string())
    });
    gateway.wait_for("ready", |l| (l.trim() == "ready").then_some(()));
    // Until the miner's advert arrives, the gateway lists no model: wait for it.
    let models_url = format!("{base}/models");
    let end = Instant::now() + DEADLINE;
    loop {
        let out = Command::new(&python)
            .args([
                "-c",
                "import sys,openai; c=openai.OpenAI(base_url=sys.argv[1].rsplit('/models',1)[0], api_key='x'); print(' '.join(m.id for m in c.models.list()))",
                &models_url,
            ])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout);
        if listed.contains(MINILM) && listed.contains(SMOLLM2) {
            break;
        }
        assert!(Instant::now() < end, "the gateway never listed both models");
        std::thread::sleep(Duration::from_millis(500));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(["--base-url", &base])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the openai client script failed");
    assert!(stdout.contains("checks passed"), "{stdout}");

    // `agora query`, a client process of its own, buys an embedding and a chat answer.
    let query = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_agora"))
            .args([
                "query",
                "--ephemeral-key",
                "--loopback",
                "--bootstrap",
                &boot_addr,
                "--json",
            ])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "agora query {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let embedded = query(&["--task", "embed", "--input", "hello", "--input", "world"]);
    let answer = &embedded["answers"][0];
    assert_eq!(answer["dimension"], 384);
    assert_eq!(answer["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(answer["price"], 1_000);
    assert_eq!(answer["receipt"].as_str().unwrap().len(), 64);
    let chatted = query(&[
        "--task",
        "generate",
        "--input",
        "Name three colours.",
        "--max-tokens",
        "8",
    ]);
    let answer = &chatted["answers"][0];
    assert!(!answer["text"].as_str().unwrap().is_empty(), "{chatted}");
    assert_eq!(answer["price"], 10_000);
}
