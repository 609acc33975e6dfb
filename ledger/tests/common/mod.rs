//! Fixtures shared by the ledger's settlement tests (`anchor.rs`, `settle_snapshots.rs`).

#![allow(dead_code, clippy::unwrap_used)]

use agora_protocols::{ContentId, ProviderReceipt, Receipt, ReceiptBody, SecretKey, Task};

/// The client of every test receipt.
pub fn client() -> SecretKey {
    SecretKey::from_seed(&[2; 32])
}

/// The provider of every test receipt.
pub fn provider() -> SecretKey {
    SecretKey::from_seed(&[3; 32])
}

/// The provider's half of receipt `n` on `subnet` at `price`: an embedding query, nonce `n`.
pub fn half(n: u64, subnet: u16, price: u64) -> ProviderReceipt {
    let (client, provider) = (client(), provider());
    let body = ReceiptBody {
        version: agora_protocols::receipt::RECEIPT_VERSION,
        query_id: ContentId::of_payload(&n.to_le_bytes()),
        subnet,
        task: Task::Embed,
        model: "all-minilm-l6-v2".into(),
        input_hash: ContentId::of_payload(b"in"),
        output_hash: ContentId::of_payload(b"out"),
        price,
        client: client.public(),
        provider: provider.public(),
        nonce: n,
        requested_at_ms: 1_700_000_000_000,
        answered_at_ms: 1_700_000_000_010,
    };
    ProviderReceipt::sign(body, &provider).unwrap()
}

/// [`half`], countersigned by the client.
pub fn full(n: u64, subnet: u16, price: u64) -> Receipt {
    half(n, subnet, price).countersign(&client()).unwrap()
}
