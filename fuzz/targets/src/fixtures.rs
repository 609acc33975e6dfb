//! Fixed keys and values shared by the targets and the seed generator, so that generated seeds
//! pass the targets' deeper checks (an answer that matches the target's own request, a proof
//! against the target's own tree, a transaction by a key the ledger fixture knows).

use agora_ledger::state::LedgerState;
use agora_ledger::state::genesis::LedgerGenesis;
use agora_ledger::state::tx::{Call, hotkey_binding_proof, sign_tx};
use agora_protocols::merkle::LEAF_LEN;
use agora_protocols::{
    ContentId, EmbedInput, MerkleTree, Payload, QueryRequest, SecretKey, Signed, Task,
};
use std::sync::OnceLock;

/// The client of every fixture query.
pub fn client() -> SecretKey {
    SecretKey::from_seed(&[0xc1; 32])
}

/// The provider of every fixture answer.
pub fn provider() -> SecretKey {
    SecretKey::from_seed(&[0x9e; 32])
}

/// The ledger fixture's coldkey (funded, owns subnet 1).
pub fn coldkey() -> SecretKey {
    SecretKey::from_seed(&[0xc0; 32])
}

/// The ledger fixture's hotkey (owned by [`coldkey`], registered on subnet 1, staked).
pub fn hotkey() -> SecretKey {
    SecretKey::from_seed(&[0x40; 32])
}

/// Fixed "now" of the fixtures (2026-11-25, milliseconds since the Unix epoch): deadlines and
/// adverts are judged against it, so a target behaves the same on every run.
pub const NOW_MS: u64 = 1_795_000_000_000;

/// The signed embedding query the fixture answers belong to.
pub fn request() -> &'static Signed<QueryRequest> {
    static REQUEST: OnceLock<Option<Signed<QueryRequest>>> = OnceLock::new();
    let made = REQUEST.get_or_init(|| {
        let input = EmbedInput {
            texts: vec!["fuzz me".to_string(), "and me".to_string()],
        }
        .to_bytes()
        .ok()?;
        Signed::sign(
            QueryRequest {
                query_id: ContentId::of_payload(b"fuzz query"),
                subnet: 1,
                task: Task::Embed,
                model: "all-minilm-l6-v2".to_string(),
                input,
                max_price: 5_000,
                nonce: 7,
                sent_at_ms: NOW_MS,
                deadline_ms: NOW_MS + 30_000,
            },
            &client(),
        )
        .ok()
    });
    match made {
        Some(request) => request,
        // The fixture is built from constants that always encode and sign.
        None => unreachable_fixture("request"),
    }
}

/// Leaf `i` of the fixture Merkle trees.
pub fn merkle_leaf(i: u64) -> [u8; LEAF_LEN] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

/// Leaf counts of the fixture trees: one chunk, several chunks, more than one block of chunks.
pub const MERKLE_SIZES: [u64; 3] = [5, 100, 9_000];

/// The fixture Merkle trees (one per [`MERKLE_SIZES`] entry).
pub fn merkle_trees() -> &'static [MerkleTree] {
    static TREES: OnceLock<Vec<MerkleTree>> = OnceLock::new();
    TREES.get_or_init(|| {
        MERKLE_SIZES
            .iter()
            .map(|n| MerkleTree::new((0..*n).map(merkle_leaf).collect()))
            .collect()
    })
}

/// The ledger genesis of the fixture state: the coldkey funded, subnet 1 owned by it.
pub fn ledger_genesis_json() -> String {
    format!(
        r#"{{"accounts": {{"{cold}": 1000000000000000, "{client}": 5000000000}},
 "params": {{"subnet_lock_cost": 100000000000}},
 "subnets": [{{"owner": "{cold}", "hyperparameters": {{"tempo": 10, "weights_set_rate_limit": 0}}}}]}}"#,
        cold = coldkey().public().to_hex(),
        client = client().public().to_hex(),
    )
}

/// The transactions of the fixture's first block: bind the hotkey, register it, stake on it.
pub fn setup_transactions() -> Vec<Signed<agora_ledger::state::tx::Transaction>> {
    let cold = coldkey();
    let hot = hotkey();
    let calls = [
        Call::AssociateHotkey {
            hotkey: hot.public(),
            proof: hotkey_binding_proof(&hot, &cold.public()),
        },
        Call::Register {
            netuid: 1,
            hotkey: hot.public(),
        },
        Call::AddStake {
            hotkey: hot.public(),
            amount: 1_000_000_000_000,
        },
    ];
    calls
        .into_iter()
        .zip(0u64..)
        .filter_map(|(call, nonce)| sign_tx(&cold, nonce, call).ok())
        .collect()
}

/// The ledger after genesis and [`setup_transactions`] (height 1).
pub fn ledger_state() -> &'static LedgerState {
    static STATE: OnceLock<Option<LedgerState>> = OnceLock::new();
    let made = STATE.get_or_init(|| {
        let genesis = LedgerGenesis::from_json(&ledger_genesis_json()).ok()?;
        let mut state = genesis.to_state();
        state.apply_block(1, &setup_transactions()).ok()?;
        Some(state)
    });
    match made {
        Some(state) => state,
        None => unreachable_fixture("ledger state"),
    }
}

/// A fixture built from constants failed: the code under test changed its rules, which the
/// corpus test reports at once.
#[allow(clippy::panic)]
fn unreachable_fixture(what: &str) -> ! {
    panic!("the fuzz fixture {what} could not be built")
}
