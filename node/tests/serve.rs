#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `agora serve` end to end: the real binary on 127.0.0.1 with the real embedding model, asked by an
//! overlay node in this test exactly as a client on the mesh would ask.
//!
//! Promises checked: an embed query is answered with the right embedding and a valid provider
//! receipt; settling stores the countersignature once (new, then not new); replays (same signed
//! bytes, or a stale send time), forged requests, bad payloads, unknown models and clients past the
//! credit limit are refused with the right kind and a reason; 32 concurrent queries are all answered;
//! after a crash (SIGKILL) and a restart on the same store and key, an old query replayed is still
//! refused, the client's unpaid total is still known, and `agora receipts list` shows every receipt.
//! SIGTERM stops it cleanly; an ephemeral miner's temporary store is deleted at exit. No timing
//! thresholds: every wait polls under one generous deadline.

use agora_overlay::{Client, Config, Multiaddr, OverlayError, PeerId, now_ms};
use agora_protocols::{
    ContentId, EmbedInput, EmbedOutput, Payload, QueryErrorKind, QueryRequest, SecretKey, Signed,
    Task,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MODEL: &str = "all-minilm-l6-v2";
/// One deadline for every wait: the machine is shared and may be building other things.
const DEADLINE: Duration = Duration::from_secs(120);
/// Price of one query at the miner, and the credit it gives each client (40 queries).
const PRICE: u64 = 1_000_000;
const CREDIT: u64 = 40 * PRICE;

/// A running `agora serve`, killed (SIGKILL) when dropped unless it was stopped already.
struct Serve {
    child: Child,
    peer: PeerId,
    listen: Multiaddr,
    http: String,
    lines: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Sends SIGTERM and waits for the exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "agora serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Forwards a child's output lines to a channel (stderr is echoed to ours for diagnosis).
fn lines(stream: impl Read + Send + 'static, echo: bool) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if echo {
                eprintln!("[serve] {line}");
            }
            // Keep draining after the receiver is gone, so the child never blocks on a full pipe.
            let _ = tx.send(line);
        }
    });
    rx
}

/// Starts `agora serve` on an ephemeral loopback port and waits for `ready`.
fn start_serve(args: &[&str], envs: &[(&str, &Path)]) -> Serve {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.args([
        "serve",
        "--loopback",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--http",
        "127.0.0.1:0",
        "--model",
        MODEL,
    ])
    .args(args)
    .env_remove("AGORA_RECEIPTS")
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("agora serve starts");
    let out = lines(child.stdout.take().unwrap(), false);
    let _err = lines(child.stderr.take().unwrap(), true);
    let (mut peer, mut listen, mut http, mut seen) = (None, None, None, Vec::new());
    let start = Instant::now();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let line = match out.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("agora serve never said ready; it said {seen:?}");
            }
        };
        if let Some(rest) = line.strip_prefix("peer ") {
            peer = Some(rest.parse().unwrap());
        } else if let Some(rest) = line.strip_prefix("listen ") {
            listen.get_or_insert_with(|| rest.parse().unwrap());
        } else if let Some(rest) = line.strip_prefix("http ") {
            http = Some(rest.to_string());
        }
        let ready = line == "ready";
        seen.push(line);
        if ready {
            break;
        }
    }
    Serve {
        child,
        peer: peer.expect("a peer line"),
        listen: listen.expect("a listen line"),
        http: http.expect("an http line"),
        lines: seen,
    }
}

/// GET on the miner's local API.
fn get_json(http: &str, path: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

fn agora(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env("COLD_PW", "cold password for tests");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "agora {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A signed query; `n` makes the query id and the nonce.
fn request(
    key: &SecretKey,
    n: u64,
    model: &str,
    input: Vec<u8>,
    sent_at_ms: u64,
) -> Signed<QueryRequest> {
    let mut id = key.public().to_bytes().to_vec();
    id.extend_from_slice(&n.to_le_bytes());
    Signed::sign(
        QueryRequest {
            query_id: ContentId::of_payload(&id),
            subnet: 1,
            task: Task::Embed,
            model: model.to_string(),
            input,
            max_price: PRICE,
            nonce: n,
            sent_at_ms,
            deadline_ms: now_ms() + 60_000,
        },
        key,
    )
    .unwrap()
}

fn embed_input(texts: &[&str]) -> Vec<u8> {
    EmbedInput {
        texts: texts.iter().map(|t| t.to_string()).collect(),
    }
    .to_bytes()
    .unwrap()
}

/// The refusal's kind and message, failing on anything else.
fn refused(result: Result<agora_overlay::Answer, OverlayError>) -> (QueryErrorKind, String) {
    match result {
        Err(OverlayError::Refused(e)) => (e.kind, e.message),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got an answer"),
    }
}

/// An overlay node for the test's client, connected to the miner.
async fn connect(key: &SecretKey, serve: &Serve) -> Client {
    let config = Config {
        bootstrap: vec![serve.listen.clone()],
        ..Config::loopback()
    };
    let (client, mut events) = agora_overlay::spawn(key, config, None).unwrap();
    // The client serves nothing: drain (and drop) whatever reaches it.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    wait_connected(&client, serve).await;
    client
}

async fn wait_connected(client: &Client, serve: &Serve) {
    let start = Instant::now();
    let peer = serve.peer.to_string();
    loop {
        let peers = client.peers().await.unwrap();
        if peers.iter().any(|p| p.peer == peer && p.connected) {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "never connected to the miner");
        let _ = client.dial(serve.listen.clone()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_miner_answers_refuses_and_remembers_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let wallets = dir.path().join("wallets");
    let store = dir.path().join("receipts.redb");
    let envs: &[(&str, &Path)] = &[("AGORA_WALLET_PATH", &wallets)];
    agora(
        &[
            "wallet",
            "new",
            "--name",
            "miner",
            "--password-env",
            "COLD_PW",
            "--no-hotkey-password",
            "--insecure-fast-kdf",
            "--json",
        ],
        envs,
    );
    let store_arg = store.to_str().unwrap().to_string();
    let price_arg = format!("{MODEL}={PRICE}");
    let credit_arg = CREDIT.to_string();
    let serve_args = [
        "--wallet",
        "miner",
        "--receipts",
        &store_arg,
        "--price",
        &price_arg,
        "--credit-limit",
        &credit_arg,
    ];
    let mut serve = start_serve(&serve_args, envs);
    assert!(
        serve
            .lines
            .iter()
            .any(|l| l == &format!("loading {MODEL} ..."))
    );
    assert!(serve.lines.iter().any(|l| l.starts_with("loaded in ")));

    let rt = runtime();
    let key = SecretKey::generate();
    let client = rt.block_on(connect(&key, &serve));
    let peer = serve.peer;

    // A real query: the embedding is the model's, the receipt is the miner's and names this query.
    let texts = ["A man is eating food.", "The new movie is awesome."];
    let first = request(&key, 1, MODEL, embed_input(&texts), now_ms());
    let answer = rt.block_on(client.query(peer, first.clone())).unwrap();
    let output = EmbedOutput::from_bytes(&answer.output).unwrap();
    assert_eq!(output.dimension, 384);
    assert_eq!(output.vectors.len(), 2);
    assert!(output.tokens > 0);
    let local = agora_inference::embedding::SentenceEmbedder::load_default().unwrap();
    for (text, vector) in texts.iter().zip(&output.vectors) {
        let expected = local.embed(text).unwrap();
        let cos = agora_protocols::task::cosine(vector, &expected);
        assert!(cos > 0.9999, "cosine {cos} for {text:?}");
    }
    let body = answer.receipt.body();
    assert_eq!(body.price, PRICE);
    assert_eq!(body.client, key.public());
    assert_eq!(agora_overlay::peer_id_of(&body.provider).unwrap(), peer);
    assert_eq!(body.query_id, first.value().query_id);

    // Settlement: stored once.
    let receipt = answer.receipt.countersign(&key).unwrap();
    assert!(rt.block_on(client.settle(peer, receipt.clone())).unwrap());
    assert!(!rt.block_on(client.settle(peer, receipt)).unwrap());

    // The same signed bytes again.
    let (kind, _) = refused(rt.block_on(client.query(peer, first.clone())));
    assert_eq!(kind, QueryErrorKind::Replay);
    // A send time outside the replay window.
    let stale = request(&key, 2, MODEL, embed_input(&["x"]), now_ms() - 600_000);
    let (kind, message) = refused(rt.block_on(client.query(peer, stale)));
    assert_eq!(kind, QueryErrorKind::Replay);
    assert!(message.contains("the replay window is 120 s"), "{message}");
    // Signed by a key other than the sending peer's.
    let forged = request(
        &SecretKey::generate(),
        3,
        MODEL,
        embed_input(&["x"]),
        now_ms(),
    );
    let (kind, _) = refused(rt.block_on(client.query(peer, forged)));
    assert_eq!(kind, QueryErrorKind::BadSignature);
    // Not an embedding payload.
    let bad = request(&key, 4, MODEL, b"not a payload".to_vec(), now_ms());
    let (kind, _) = refused(rt.block_on(client.query(peer, bad)));
    assert_eq!(kind, QueryErrorKind::BadInput);
    // A model the miner does not serve.
    let unknown = request(&key, 5, "gpt-9", embed_input(&["x"]), now_ms());
    let (kind, message) = refused(rt.block_on(client.query(peer, unknown)));
    assert_eq!(kind, QueryErrorKind::UnknownModel);
    assert!(message.contains(MODEL), "{message}");

    // 32 concurrent queries, all answered (their texts share batches in the miner).
    let answers = rt.block_on(async {
        let handles: Vec<_> = (0..32u64)
            .map(|i| {
                let client = client.clone();
                let q = request(
                    &key,
                    100 + i,
                    MODEL,
                    embed_input(&[&format!("sentence number {i}")]),
                    now_ms(),
                );
                tokio::spawn(async move { client.query(peer, q).await })
            })
            .collect();
        let mut answers = Vec::new();
        for h in handles {
            answers.push(h.await.unwrap());
        }
        answers
    });
    for a in answers {
        let out = EmbedOutput::from_bytes(&a.unwrap().output).unwrap();
        assert_eq!(out.vectors.len(), 1);
        assert_eq!(out.vectors[0].len(), 384);
    }

    // 33 queries owed so far; the credit covers 40. The 41st is refused, saying why.
    let mut n = 1000;
    for _ in 33..40 {
        n += 1;
        let q = request(&key, n, MODEL, embed_input(&["more"]), now_ms());
        rt.block_on(client.query(peer, q)).unwrap();
    }
    let over = request(&key, n + 1, MODEL, embed_input(&["one too many"]), now_ms());
    let (kind, message) = refused(rt.block_on(client.query(peer, over)));
    assert_eq!(kind, QueryErrorKind::OverBudget);
    assert!(
        message.contains(&format!(
            "unpaid receipts of {CREDIT} units: over this provider's credit limit of {CREDIT}"
        )),
        "{message}"
    );
    let stats = get_json(&serve.http, "/api/serve");
    assert_eq!(stats["answered"], 40);
    assert_eq!(stats["settled"], 1);
    assert_eq!(stats["settled_again"], 1);
    assert_eq!(stats["refused"]["Replay"], 2);
    assert_eq!(stats["refused"]["OverBudget"], 1);

    // Crash, then restart on the same store with the same key.
    let _ = serve.child.kill();
    let _ = serve.child.wait();
    drop(serve);
    let mut serve = start_serve(&serve_args, envs);
    assert_eq!(serve.peer, peer, "the wallet's hotkey is the peer id");
    rt.block_on(wait_connected(&client, &serve));
    let (kind, message) = refused(rt.block_on(client.query(peer, first.clone())));
    assert_eq!(kind, QueryErrorKind::Replay);
    assert!(message.contains("already answered"), "{message}");
    // The unpaid total survived too.
    let after = request(&key, 5000, MODEL, embed_input(&["after"]), now_ms());
    let (kind, _) = refused(rt.block_on(client.query(peer, after)));
    assert_eq!(kind, QueryErrorKind::OverBudget);

    assert!(serve.terminate().success(), "SIGTERM is a clean exit");
    drop(serve);

    let out = agora(
        &[
            "receipts", "list", "--store", &store_arg, "--json", "--limit", "1000",
        ],
        &[],
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 40);
    assert_eq!(
        rows.iter()
            .filter(|r| r["countersigned"] == serde_json::Value::Bool(true))
            .count(),
        1
    );
    let client_hex = key.public().to_hex();
    assert!(rows.iter().all(|r| r["client"] == client_hex.as_str()));
    assert!(rows.iter().all(|r| r["price"] == PRICE));
}

#[test]
fn an_ephemeral_miner_keeps_its_receipts_in_a_temporary_file_deleted_at_exit() {
    let mut serve = start_serve(&["--ephemeral-key"], &[]);
    let line = serve
        .lines
        .iter()
        .find(|l| l.starts_with("receipts "))
        .cloned()
        .expect("a receipts line");
    assert!(line.contains("temporary"), "{line}");
    let path = PathBuf::from(line.split(' ').nth(1).unwrap());
    assert!(path.exists(), "{} exists while serving", path.display());
    assert!(serve.terminate().success());
    assert!(!path.exists(), "{} deleted at exit", path.display());
}

#[test]
fn a_generation_query_is_answered_with_the_models_greedy_tokens() {
    use agora_inference::generation::{ChatMessage, GenerationParams, Generator};
    use agora_protocols::{GenerateInput, GenerateOutput, Sampling};
    const SMOLLM2: &str = "smollm2-135m-instruct";
    let price = format!("{SMOLLM2}={PRICE}");
    let serve = start_serve(
        &["--ephemeral-key", "--model", SMOLLM2, "--price", &price],
        // Compared token for token with the CPU model below.
        &[("AGORA_DEVICE", Path::new("cpu"))],
    );
    let rt = runtime();
    let key = SecretKey::generate();
    let client = rt.block_on(connect(&key, &serve));
    let chat = "What is the capital of France?";
    let input = GenerateInput {
        messages: vec![agora_protocols::ChatMessage {
            role: "user".to_string(),
            content: chat.to_string(),
        }],
        max_tokens: 12,
        sampling: Sampling::Greedy,
        stop: Vec::new(),
    };
    let mut q = request(&key, 1, SMOLLM2, input.to_bytes().unwrap(), now_ms());
    // `request` builds embed queries; this one is for generation.
    let mut value = q.value().clone();
    value.task = Task::Generate;
    q = Signed::sign(value, &key).unwrap();
    let answer = rt.block_on(client.query(serve.peer, q)).unwrap();
    let output = GenerateOutput::from_bytes(&answer.output).unwrap();
    assert_eq!(answer.receipt.body().task, Task::Generate);

    let local = Generator::load(
        &agora_inference::generation::default_model_path(),
        agora_inference::backend::DevicePreference::Cpu,
    )
    .unwrap();
    let prompt = local
        .tokenizer()
        .apply_chat_template(&[ChatMessage::new("user", chat)], true);
    let params = GenerationParams {
        max_tokens: 12,
        ..GenerationParams::default()
    };
    let expected = local.generate_text(&prompt, &params, |_| {}).unwrap();
    assert_eq!(output.token_ids, expected.token_ids);
    assert_eq!(output.text, expected.text);
    assert_eq!(output.prompt_tokens as usize, expected.prompt_tokens);
    // A malformed chat is refused before it reaches the model.
    let bad = GenerateInput {
        max_tokens: 0,
        ..input
    };
    let mut value = request(&key, 2, SMOLLM2, Vec::new(), now_ms())
        .value()
        .clone();
    value.task = Task::Generate;
    value.input = codec_bytes(&bad);
    let (kind, _) =
        refused(rt.block_on(client.query(serve.peer, Signed::sign(value, &key).unwrap())));
    assert_eq!(kind, QueryErrorKind::BadInput);
}

/// The payload's bytes without its validation (to send an invalid one).
fn codec_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    agora_protocols::codec::encode(value).unwrap()
}
