//! Builders shared by the protocol tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // shared test helpers

use agora_protocols::{ContentId, ReceiptBody, SecretKey, Task};

/// A fixed key from a one-byte seed, so failures reproduce.
pub fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

/// A valid receipt body between `client` and `provider`.
pub fn body(client: &SecretKey, provider: &SecretKey) -> ReceiptBody {
    ReceiptBody {
        version: agora_protocols::receipt::RECEIPT_VERSION,
        query_id: ContentId::of_payload(b"query 1"),
        subnet: 1,
        task: Task::Embed,
        model: "all-minilm-l6-v2".to_string(),
        input_hash: ContentId::of_payload(b"the input"),
        output_hash: ContentId::of_payload(b"the output"),
        price: 1_500_000,
        client: client.public(),
        provider: provider.public(),
        nonce: 42,
        requested_at_ms: 1_764_000_000_000,
        answered_at_ms: 1_764_000_000_015,
    }
}
