//! Seed inputs for every target: real encoded messages and files, made with the real encoders and
//! the fixture keys (so that they pass the targets' deeper checks), plus the first bytes of the
//! real model files when the model cache has them.
//!
//! `agora-fuzz-seeds` writes them under `fuzz/corpus/<target>/seed-<name>`; libFuzzer mutates from
//! there.

use crate::fixtures::{self, NOW_MS};
use agora_inference::generation::Gguf;
use agora_inference::generation::gguf::{MetadataArray, MetadataValue};
use agora_ledger::log::LocalLog;
use agora_ledger::state::tx::{Call, Transaction, sign_tx, weights_commit_hash};
use agora_protocols::{
    CapabilityAdvert, ChatMessage, ContentId, EmbedOutput, Finish, GenerateInput, GenerateOutput,
    ModelOffer, Offer, Payload, ProviderReceipt, QueryAnnouncement, QueryErrorKind, QueryRequest,
    QueryWireRequest, QueryWireResponse, Reachability, ReceiptBody, Sampling, Signed, Task, codec,
    receipt::RECEIPT_VERSION,
};
use agora_wallet::keyfile::{KdfParams, KeyKind, Keyfile, Password, Protection};
use std::path::Path;

/// One seed: the target it is for, a short name, the bytes.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Target name (see [`crate::TARGETS`]).
    pub target: &'static str,
    /// File name suffix: the corpus file is `seed-<name>`.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

/// Why seeds could not be made.
pub type SeedError = Box<dyn std::error::Error>;

struct Seeds(Vec<Seed>);

impl Seeds {
    fn add(&mut self, target: &'static str, name: &str, bytes: Vec<u8>) {
        self.0.push(Seed {
            target,
            name: name.to_string(),
            bytes,
        });
    }
}

/// Prefixes `body` with its 4-byte big-endian length, as `/agora/query/1` frames are sent.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn embed_request() -> Result<QueryRequest, SeedError> {
    Ok(fixtures::request().value().clone())
}

fn generate_input() -> GenerateInput {
    GenerateInput {
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "Name three colours.".into(),
            },
        ],
        max_tokens: 16,
        sampling: Sampling::Greedy,
        stop: vec!["\n\n".into()],
    }
}

fn generate_request() -> Result<QueryRequest, SeedError> {
    Ok(QueryRequest {
        query_id: ContentId::of_payload(b"fuzz generate"),
        task: Task::Generate,
        model: "smollm2-135m-instruct".into(),
        input: generate_input().to_bytes()?,
        nonce: 8,
        ..embed_request()?
    })
}

fn embed_output() -> EmbedOutput {
    EmbedOutput {
        dimension: 4,
        vectors: vec![vec![0.5, -0.5, 0.25, 0.0], vec![1.0, 0.0, -1.0, 0.125]],
        tokens: 9,
    }
}

/// The provider's signed half for `output` answering the fixture request.
fn provider_half(output: &[u8]) -> Result<ProviderReceipt, SeedError> {
    let request = fixtures::request();
    let q = request.value();
    let body = ReceiptBody {
        version: RECEIPT_VERSION,
        query_id: q.query_id,
        subnet: q.subnet,
        task: q.task,
        model: q.model.clone(),
        input_hash: ContentId::of_payload(&q.input),
        output_hash: ContentId::of_payload(output),
        price: 1_000,
        client: request.signer(),
        provider: fixtures::provider().public(),
        nonce: q.nonce,
        requested_at_ms: q.sent_at_ms,
        answered_at_ms: q.sent_at_ms + 15,
    };
    Ok(ProviderReceipt::sign(body, &fixtures::provider())?)
}

fn announcement() -> Result<QueryAnnouncement, SeedError> {
    let q = embed_request()?;
    Ok(QueryAnnouncement {
        query_id: q.query_id,
        subnet: q.subnet,
        task: q.task,
        model: q.model.clone(),
        input_hash: ContentId::of_payload(&q.input),
        input_len: u32::try_from(q.input.len())?,
        max_price: q.max_price,
        deadline_ms: q.deadline_ms,
    })
}

fn offer() -> Result<Offer, SeedError> {
    Ok(Offer {
        query_id: embed_request()?.query_id,
        price: 1_000,
        queue_depth: 3,
        valid_until_ms: NOW_MS + 5_000,
    })
}

fn advert() -> CapabilityAdvert {
    CapabilityAdvert {
        subnet: 1,
        offers: vec![
            ModelOffer {
                task: Task::Embed,
                model: "all-minilm-l6-v2".into(),
                price: 1_000,
                queue_depth: 0,
                throughput_milli: 95_000,
            },
            ModelOffer {
                task: Task::Generate,
                model: "smollm2-135m-instruct".into(),
                price: 20_000,
                queue_depth: 2,
                throughput_milli: 4_000,
            },
        ],
        reachability: Reachability::Direct,
        addrs: vec![
            "/ip4/127.0.0.1/tcp/4001".into(),
            "/ip4/127.0.0.1/udp/4001/quic-v1".into(),
        ],
        issued_at_ms: NOW_MS - 1_000,
        ttl_ms: 30_000,
    }
}

fn wire(seeds: &mut Seeds) -> Result<(), SeedError> {
    let client = fixtures::client();
    let request = fixtures::request();
    let generate = Signed::sign(generate_request()?, &client)?;
    let output = embed_output().to_bytes()?;
    let half = provider_half(&output)?;
    let full = half.clone().countersign(&client)?;
    let signed_offer = Signed::sign(offer()?, &fixtures::provider())?;

    // Frames, as the overlay's codec reads them.
    let requests = [
        ("query-embed", QueryWireRequest::Query(request.to_bytes()?)),
        (
            "query-generate",
            QueryWireRequest::Query(generate.to_bytes()?),
        ),
        ("offer", QueryWireRequest::Offer(signed_offer.to_bytes()?)),
        ("settle", QueryWireRequest::Settle(full.to_bytes()?)),
    ];
    for (name, r) in requests {
        seeds.add("query_wire_request", name, frame(&codec::encode(&r)?));
    }
    let responses = [
        (
            "answer",
            QueryWireResponse::Answer {
                output: output.clone(),
                receipt: half.to_bytes()?,
            },
        ),
        (
            "offer-noted",
            QueryWireResponse::OfferNoted { awarded: true },
        ),
        ("settled", QueryWireResponse::Settled { new: true }),
        (
            "error",
            QueryWireResponse::Error(agora_protocols::QueryError {
                kind: QueryErrorKind::RateLimited,
                message: "slow down".into(),
            }),
        ),
    ];
    for (name, r) in responses {
        seeds.add("query_wire_response", name, frame(&codec::encode(&r)?));
    }

    // Envelopes and their bare payloads.
    seeds.add("query_request", "signed-embed", request.to_bytes()?);
    seeds.add("query_request", "signed-generate", generate.to_bytes()?);
    seeds.add(
        "query_request",
        "payload-embed",
        request.payload_bytes().to_vec(),
    );
    let announcement = Signed::sign(announcement()?, &client)?;
    seeds.add("query_announcement", "signed", announcement.to_bytes()?);
    seeds.add(
        "query_announcement",
        "payload",
        announcement.payload_bytes().to_vec(),
    );
    seeds.add("offer", "signed", signed_offer.to_bytes()?);
    seeds.add("offer", "payload", signed_offer.payload_bytes().to_vec());
    let advert = Signed::sign(advert(), &fixtures::provider())?;
    seeds.add("advert", "signed", advert.to_bytes()?);
    seeds.add("advert", "payload", advert.payload_bytes().to_vec());

    seeds.add("receipt", "provider-half", half.to_bytes()?);
    seeds.add("receipt", "countersigned", full.to_bytes()?);
    seeds.add("receipt", "body", half.body().to_bytes()?);

    for (tree, size) in fixtures::merkle_trees().iter().zip(fixtures::MERKLE_SIZES) {
        for index in [0, size / 2, size - 1] {
            if let Some(proof) = tree.prove(usize::try_from(index)?) {
                seeds.add(
                    "merkle_proof",
                    &format!("tree{size}-leaf{index}"),
                    proof.to_bytes()?,
                );
            }
        }
    }

    seeds.add("embed_input", "two-texts", request.value().input.clone());
    seeds.add("embed_output", "dim4", output);
    seeds.add("generate_input", "greedy", generate_input().to_bytes()?);
    let seeded = GenerateInput {
        sampling: Sampling::Seeded {
            temperature_milli: 700,
            top_p_milli: 900,
            seed: 42,
        },
        stop: vec![],
        ..generate_input()
    };
    seeds.add("generate_input", "seeded", seeded.to_bytes()?);
    let generated = GenerateOutput {
        text: "Red, green, blue.".into(),
        token_ids: vec![17, 2048, 30, 9, 11],
        prompt_tokens: 21,
        finish: Finish::Eos,
    };
    seeds.add("generate_output", "eos", generated.to_bytes()?);
    Ok(())
}

/// Every kind of ledger call, signed by the fixture key its role needs, with the fixture ledger's
/// next nonces.
fn transactions() -> Result<Vec<(&'static str, Signed<Transaction>)>, SeedError> {
    let state = fixtures::ledger_state();
    let cold = fixtures::coldkey();
    let hot = fixtures::hotkey();
    let salt = b"fuzz salt".to_vec();
    let (uids, weights) = (vec![0u16], vec![65_535u16]);
    let commit_hash = weights_commit_hash(&hot.public(), 1, &uids, &weights, &salt)?;
    let cold_nonce = state.next_nonce(&cold.public());
    let hot_nonce = state.next_nonce(&hot.public());
    let cold_calls = [
        (
            "transfer",
            Call::Transfer {
                to: fixtures::client().public(),
                amount: 1_000_000_000,
            },
        ),
        (
            "add-stake",
            Call::AddStake {
                hotkey: hot.public(),
                amount: 5_000_000_000,
            },
        ),
        (
            "remove-stake",
            Call::RemoveStake {
                hotkey: hot.public(),
                amount: 1_000_000_000,
            },
        ),
        (
            "set-take",
            Call::SetTake {
                hotkey: hot.public(),
                take_u16: 10_000,
            },
        ),
        (
            "create-subnet",
            Call::CreateSubnet {
                hyperparameters: None,
                owner_hotkey: Some(hot.public()),
            },
        ),
        (
            "register",
            Call::Register {
                netuid: 1,
                hotkey: fixtures::provider().public(),
            },
        ),
    ];
    let hot_calls = [
        (
            "set-weights",
            Call::SetWeights {
                netuid: 1,
                uids: uids.clone(),
                weights: weights.clone(),
            },
        ),
        (
            "commit-weights",
            Call::CommitWeights {
                netuid: 1,
                commit_hash,
            },
        ),
        (
            "reveal-weights",
            Call::RevealWeights {
                netuid: 1,
                uids,
                weights,
                salt,
            },
        ),
    ];
    let mut out = Vec::new();
    for (name, call) in cold_calls {
        out.push((name, sign_tx(&cold, cold_nonce, call)?));
    }
    for (name, call) in hot_calls {
        out.push((name, sign_tx(&hot, hot_nonce, call)?));
    }
    Ok(out)
}

fn ledger(seeds: &mut Seeds, scratch: &Path) -> Result<(), SeedError> {
    for (name, tx) in transactions()? {
        seeds.add("ledger_tx", &format!("signed-{name}"), tx.to_bytes()?);
        seeds.add(
            "ledger_tx",
            &format!("payload-{name}"),
            tx.payload_bytes().to_vec(),
        );
    }
    for (i, tx) in fixtures::setup_transactions().iter().enumerate() {
        seeds.add("ledger_tx", &format!("signed-setup{i}"), tx.to_bytes()?);
    }

    // A real log: the fixture's setup block, a block of two transfers, an empty block, and a
    // transaction not yet sealed.
    let path = scratch.join("ledger.log");
    let _ = std::fs::remove_file(&path);
    {
        let mut log = LocalLog::open(&path)?;
        for tx in fixtures::setup_transactions() {
            log.append_bytes(&tx.to_bytes()?)?;
        }
        log.seal_block()?;
        let cold = fixtures::coldkey();
        for nonce in 3..5 {
            let tx = sign_tx(
                &cold,
                nonce,
                Call::Transfer {
                    to: fixtures::client().public(),
                    amount: 1_000 * nonce,
                },
            )?;
            log.append_bytes(&tx.to_bytes()?)?;
        }
        log.seal_block()?;
        log.seal_block()?;
        let tx = sign_tx(
            &cold,
            5,
            Call::Transfer {
                to: fixtures::provider().public(),
                amount: 1,
            },
        )?;
        log.append_bytes(&tx.to_bytes()?)?;
    }
    let bytes = std::fs::read(&path)?;
    let _ = std::fs::remove_file(&path);
    seeds.add(
        "ledger_log",
        "torn-tail",
        bytes
            .get(..bytes.len().saturating_sub(7))
            .unwrap_or_default()
            .to_vec(),
    );
    seeds.add("ledger_log", "three-blocks", bytes);

    let json = fixtures::ledger_genesis_json();
    seeds.add("ledger_genesis", "fixture", json.clone().into_bytes());
    let balances = format!(
        r#"{{"accounts": {{"{}": 1000000000000, "{}": 1}}}}"#,
        fixtures::client().public().to_hex(),
        fixtures::provider().public().to_hex()
    );
    seeds.add(
        "balances_genesis",
        "two-accounts",
        balances.clone().into_bytes(),
    );
    seeds.add("ledger_genesis", "balances-only", balances.into_bytes());
    Ok(())
}

fn keyfiles(seeds: &mut Seeds) -> Result<(), SeedError> {
    let hot = Keyfile::seal(KeyKind::Hotkey, &fixtures::hotkey(), Protection::Plaintext)?;
    seeds.add("keyfile", "hotkey-plaintext", hot.to_bytes()?.to_vec());
    let password = Password::from_string("correct horse battery staple".into());
    let cold = Keyfile::seal(
        KeyKind::Coldkey,
        &fixtures::coldkey(),
        Protection::Encrypted {
            password: &password,
            kdf: KdfParams::INSECURE_FAST,
        },
    )?;
    seeds.add("keyfile", "coldkey-encrypted", cold.to_bytes()?.to_vec());
    Ok(())
}

/// Config files: the example of docs/configuration.md, one with every shared table, and a few
/// that are refused for each reason (an unknown table, an unknown key, a value where a table
/// belongs, a list for a single flag, a bad number).
fn configs(seeds: &mut Seeds) {
    let examples: &[(&str, &str)] = &[
        (
            "example",
            "[mesh]\nbootstrap = [\"/dns4/boot.example.org/tcp/4001/p2p/12D3KooW\"]\n\
             listen = [\"/ip4/0.0.0.0/tcp/4001\", \"/ip4/0.0.0.0/udp/4001/quic-v1\"]\n\
             subnet = [1]\n\n[wallet]\nwallet = \"miner1\"\n\n[serve]\n\
             model = [\"all-minilm-l6-v2\", \"smollm2-135m-instruct\"]\n\
             price = [\"all-minilm-l6-v2=1000\", \"smollm2-135m-instruct=50000\"]\n\
             http = \"127.0.0.1:7700\"\n",
        ),
        (
            "shared-tables",
            "[mesh]\nloopback = true\nrelay = \"never\"\nkad-server = false\n\
             [wallet]\nwallet-path = \"/var/lib/agora/wallets\"\nhotkey = \"default\"\n\
             [ledger]\nledger-log = \"ledger.log\"\nchain-depth = 2\nchain-id = 31337\n\
             [client]\nmax-price = 1000000\ndeadline-ms = 60000\nattempts = 3\nmode = \"direct\"\n\
             [serve]\ncredit-limit = 1000000000\nrate-limit = 50\nrelay = \"auto\"\n",
        ),
        ("unknown-table", "[server]\nmodel = \"x\"\n"),
        ("unknown-key", "[mesh]\nbootstraps = []\n"),
        ("not-a-table", "model = \"all-minilm-l6-v2\"\n"),
        (
            "list-for-one",
            "[serve]\nhttp = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n",
        ),
        ("bad-number", "[serve]\ncredit-limit = -5\nrate-limit = 0\n"),
        (
            "dates-and-tables",
            "[serve]\nmodel = [1979-05-27, { a = 1 }]\nhttp = 1.5\n",
        ),
    ];
    for (name, text) in examples {
        seeds.add("config", name, text.as_bytes().to_vec());
    }
}

/// The first `n` bytes of a file, if it can be read.
fn head(path: &Path, n: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(n);
    std::fs::File::open(path)
        .ok()?
        .take(n as u64)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

// GGUF metadata value type tags.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Writes a metadata value's type and bytes; arrays are cut to their first `keep` elements.
fn put_value(out: &mut Vec<u8>, value: &MetadataValue, keep: usize) {
    match value {
        MetadataValue::U8(v) => out.push(*v),
        MetadataValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(u8::from(*v)),
        MetadataValue::String(s) => put_str(out, s),
        MetadataValue::Array(a) => put_array(out, a, keep),
        MetadataValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn value_tag(value: &MetadataValue) -> u32 {
    match value {
        MetadataValue::U8(_) => T_U8,
        MetadataValue::I8(_) => T_I8,
        MetadataValue::U16(_) => T_U16,
        MetadataValue::I16(_) => T_I16,
        MetadataValue::U32(_) => T_U32,
        MetadataValue::I32(_) => T_I32,
        MetadataValue::F32(_) => T_F32,
        MetadataValue::Bool(_) => T_BOOL,
        MetadataValue::String(_) => T_STRING,
        MetadataValue::Array(_) => T_ARRAY,
        MetadataValue::U64(_) => T_U64,
        MetadataValue::I64(_) => T_I64,
        MetadataValue::F64(_) => T_F64,
    }
}

fn put_array(out: &mut Vec<u8>, array: &MetadataArray, keep: usize) {
    macro_rules! fixed {
        ($tag:expr, $v:expr) => {{
            out.extend_from_slice(&$tag.to_le_bytes());
            let items = &$v[..$v.len().min(keep)];
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }};
    }
    match array {
        MetadataArray::U8(v) => fixed!(T_U8, v),
        MetadataArray::I8(v) => fixed!(T_I8, v),
        MetadataArray::U16(v) => fixed!(T_U16, v),
        MetadataArray::I16(v) => fixed!(T_I16, v),
        MetadataArray::U32(v) => fixed!(T_U32, v),
        MetadataArray::I32(v) => fixed!(T_I32, v),
        MetadataArray::F32(v) => fixed!(T_F32, v),
        MetadataArray::U64(v) => fixed!(T_U64, v),
        MetadataArray::I64(v) => fixed!(T_I64, v),
        MetadataArray::F64(v) => fixed!(T_F64, v),
        MetadataArray::Bool(v) => {
            out.extend_from_slice(&T_BOOL.to_le_bytes());
            let items = &v[..v.len().min(keep)];
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            out.extend(items.iter().map(|b| u8::from(*b)));
        }
        MetadataArray::String(v) => {
            out.extend_from_slice(&T_STRING.to_le_bytes());
            let items = &v[..v.len().min(keep)];
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for s in items {
                put_str(out, s);
            }
        }
        MetadataArray::Array(v) => {
            out.extend_from_slice(&T_ARRAY.to_le_bytes());
            let items = &v[..v.len().min(keep)];
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for a in items {
                put_array(out, a, keep);
            }
        }
    }
}

/// ggml type tags with their (elements, bytes) per block, one tensor of each in the mini GGUF.
const GGML_TYPES: [(u32, u64, u64); 20] = [
    (0, 1, 4),
    (1, 1, 2),
    (2, 32, 18),
    (3, 32, 20),
    (6, 32, 22),
    (7, 32, 24),
    (8, 32, 34),
    (9, 32, 40),
    (10, 256, 84),
    (11, 256, 110),
    (12, 256, 144),
    (13, 256, 176),
    (14, 256, 210),
    (15, 256, 292),
    (24, 1, 1),
    (25, 1, 2),
    (26, 1, 4),
    (27, 1, 8),
    (28, 1, 8),
    (30, 1, 2),
];

/// A small GGUF v3 file: `metadata` (arrays cut to `keep` elements) and one tensor of every
/// ggml type with one block (or 8 elements) of deterministic bytes.
fn mini_gguf(metadata: &[(String, MetadataValue)], keep: usize) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(GGML_TYPES.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        out.extend_from_slice(&value_tag(value).to_le_bytes());
        put_value(&mut out, value, keep);
    }
    let mut data = Vec::new();
    for (tag, block, block_bytes) in GGML_TYPES {
        let elements = if block == 1 { 8 } else { block };
        let size = elements / block * block_bytes;
        put_str(&mut out, &format!("fuzz.type{tag}.weight"));
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&elements.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        let mut bytes = vec![0u8; usize::try_from(size).unwrap_or(0)];
        blake3::Hasher::new()
            .update(&tag.to_le_bytes())
            .finalize_xof()
            .fill(&mut bytes);
        data.extend_from_slice(&bytes);
        while !data.len().is_multiple_of(32) {
            data.push(0);
        }
    }
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    out.extend_from_slice(&data);
    out
}

fn models(seeds: &mut Seeds) -> Result<(), SeedError> {
    use agora_inference::model_cache;
    let gguf_path = model_cache::model_dir(model_cache::SMOLLM2).join(model_cache::SMOLLM2_GGUF);
    let small: Vec<(String, MetadataValue)> = vec![
        (
            "general.architecture".into(),
            MetadataValue::String("llama".into()),
        ),
        ("general.alignment".into(), MetadataValue::U32(32)),
        ("fuzz.flag".into(), MetadataValue::Bool(true)),
        ("fuzz.scale".into(), MetadataValue::F64(0.5)),
        (
            "fuzz.nested".into(),
            MetadataValue::Array(MetadataArray::Array(vec![MetadataArray::I16(vec![1, -2])])),
        ),
    ];
    seeds.add("gguf", "mini-all-types", mini_gguf(&small, 4));
    if let Some(bytes) = head(&gguf_path, 4096) {
        seeds.add("gguf", "smollm2-head-4k", bytes);
    }
    if let Ok(real) = Gguf::open(&gguf_path) {
        let metadata: Vec<_> = real
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        seeds.add("gguf", "smollm2-metadata-cut", mini_gguf(&metadata, 16));
    }

    let st_path = model_cache::model_dir(model_cache::MINILM).join("model.safetensors");
    if let Some(bytes) = head(&st_path, 4096) {
        seeds.add("safetensors", "minilm-head-4k", bytes);
    }
    let header = br#"{"__metadata__":{"format":"pt"},"embeddings.word_embeddings.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"encoder.layer.0.attention.self.query.bias":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},"pooler.dense.weight":{"dtype":"BF16","shape":[2,2],"data_offsets":[32,40]},"position_ids":{"dtype":"I64","shape":[2],"data_offsets":[40,56]}}"#;
    let mut header = header.to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(&header);
    st.extend((0u8..56).map(|i| i.wrapping_mul(37)));
    seeds.add("safetensors", "mini-four-dtypes", st);
    Ok(())
}

/// Every seed. `scratch` is a folder for the ledger log this writes and reads back.
pub fn all(scratch: &Path) -> Result<Vec<Seed>, SeedError> {
    let mut seeds = Seeds(Vec::new());
    wire(&mut seeds)?;
    ledger(&mut seeds, scratch)?;
    anchors(&mut seeds, scratch)?;
    keyfiles(&mut seeds)?;
    models(&mut seeds)?;
    configs(&mut seeds);
    Ok(seeds.0)
}

/// Two chained anchors of the fixture provider, the first covering a tree whose leaf 0 is the
/// fixture's countersigned receipt.
fn anchors(seeds: &mut Seeds, scratch: &Path) -> Result<(), SeedError> {
    use agora_ledger::anchor::proof::INCLUSION_PROOF_VERSION;
    use agora_ledger::anchor::record::{ANCHOR_VERSION, FIRST_PREV_HASH};
    use agora_ledger::anchor::{AnchorRecord, InclusionProof, Journal, SignedAnchor, receipt_leaf};
    use agora_protocols::MerkleTree;

    let output = embed_output().to_bytes()?;
    let receipt = provider_half(&output)?
        .countersign(&fixtures::client())?
        .to_bytes()?;
    let tree = MerkleTree::new(vec![receipt_leaf(&receipt), [7u8; 32], [9u8; 32]]);
    let key = fixtures::provider();
    let first = SignedAnchor::sign(
        AnchorRecord {
            version: ANCHOR_VERSION,
            subnet: 1,
            epoch: 3,
            anchorer: key.public(),
            receipts_root: tree.root(),
            receipt_count: 3,
            total_paid: 3_000,
            weights_root: [1; 32],
            consensus_root: [2; 32],
            emission: 1_000_000_000,
            prev_hash: FIRST_PREV_HASH,
        },
        &key,
    )?;
    let second = SignedAnchor::sign(
        AnchorRecord {
            epoch: 4,
            receipts_root: agora_protocols::merkle::empty_root(),
            receipt_count: 0,
            total_paid: 0,
            prev_hash: first.hash(),
            ..first.record().clone()
        },
        &key,
    )?;
    seeds.add("anchor_record", "signed", first.to_bytes().to_vec());
    seeds.add("anchor_record", "payload", codec::encode(first.record())?);

    let path = scratch.join("anchors.journal");
    let _ = std::fs::remove_file(&path);
    {
        let mut journal = Journal::open(&path)?;
        journal.append(&first)?;
        journal.append(&second)?;
    }
    let bytes = std::fs::read(&path)?;
    let _ = std::fs::remove_file(&path);
    seeds.add("anchor_journal", "two-anchors", bytes);

    let merkle = tree.prove(0).ok_or("no proof of leaf 0")?;
    let proof = InclusionProof {
        version: INCLUSION_PROOF_VERSION,
        receipt,
        leaf_index: 0,
        merkle,
        anchor: first.to_bytes().to_vec(),
    };
    seeds.add("inclusion_proof", "bytes", proof.to_bytes()?);
    seeds.add("inclusion_proof", "text", proof.to_text()?.into_bytes());
    Ok(())
}
