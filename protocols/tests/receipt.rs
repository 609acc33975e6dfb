//! Receipts: round trips, both signatures and the pair, and every flipped bit refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use agora_protocols::receipt::{MAX_RECEIPT_LEN, ProviderReceipt, Receipt, ReceiptError};
use agora_protocols::{ReceiptBody, Task};
use common::{body, key};
use proptest::prelude::*;

fn signed_receipt() -> Receipt {
    let (client, provider) = (key(1), key(2));
    ProviderReceipt::sign(body(&client, &provider), &provider)
        .unwrap()
        .countersign(&client)
        .unwrap()
}

#[test]
fn a_receipt_round_trips_and_verifies() {
    let receipt = signed_receipt();
    receipt.verify().unwrap();
    let bytes = receipt.to_bytes().unwrap();
    assert!(bytes.len() <= MAX_RECEIPT_LEN);
    let decoded = Receipt::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, receipt);
    assert_eq!(decoded.to_bytes().unwrap(), bytes, "encoding is canonical");
    assert_eq!(decoded.id(), receipt.id());
}

#[test]
fn the_provider_half_round_trips_and_keeps_the_id() {
    let (client, provider) = (key(1), key(2));
    let half = ProviderReceipt::sign(body(&client, &provider), &provider).unwrap();
    let decoded = ProviderReceipt::from_bytes(&half.to_bytes().unwrap()).unwrap();
    assert_eq!(decoded, half);
    let id = half.id();
    assert_eq!(half.countersign(&client).unwrap().id(), id);
}

#[test]
fn only_the_named_parties_can_sign() {
    let (client, provider, stranger) = (key(1), key(2), key(3));
    let err = ProviderReceipt::sign(body(&client, &provider), &stranger).unwrap_err();
    assert!(matches!(
        err,
        ReceiptError::WrongSigner { role: "provider" }
    ));
    let half = ProviderReceipt::sign(body(&client, &provider), &provider).unwrap();
    let err = half.countersign(&stranger).unwrap_err();
    assert!(matches!(err, ReceiptError::WrongSigner { role: "client" }));
}

#[test]
fn signatures_are_checked_each_and_as_a_pair() {
    let receipt = signed_receipt();
    let bytes = receipt.to_bytes().unwrap();
    // The last 128 bytes are the provider's and the client's signatures, in that order.
    let provider_sig = bytes.len() - 128;
    let client_sig = bytes.len() - 64;

    let mut forged = bytes.clone();
    forged[provider_sig + 5] ^= 1;
    assert!(matches!(
        Receipt::from_bytes(&forged),
        Err(ReceiptError::BadProviderSignature(_))
    ));
    let mut forged = bytes.clone();
    forged[client_sig + 5] ^= 1;
    assert!(matches!(
        Receipt::from_bytes(&forged),
        Err(ReceiptError::BadClientSignature(_))
    ));
}

#[test]
fn a_countersignature_cannot_move_to_another_provider_statement() {
    // Same client, same body fields except the price: the client's signature from the first
    // receipt must not validate on the second.
    let (client, provider) = (key(1), key(2));
    let first = signed_receipt();
    let mut other_body = body(&client, &provider);
    other_body.price += 1;
    let other = ProviderReceipt::sign(other_body, &provider)
        .unwrap()
        .countersign(&client)
        .unwrap();
    let mut spliced = other.to_bytes().unwrap();
    let len = spliced.len();
    spliced[len - 64..].copy_from_slice(&first.client_signature().0);
    assert!(Receipt::from_bytes(&spliced).is_err());
}

#[test]
fn every_flipped_bit_of_a_receipt_is_refused() {
    let bytes = signed_receipt().to_bytes().unwrap();
    for bit in 0..bytes.len() * 8 {
        let mut forged = bytes.clone();
        forged[bit / 8] ^= 1 << (bit % 8);
        assert!(
            Receipt::from_bytes(&forged).is_err(),
            "receipt with bit {bit} flipped was accepted"
        );
    }
}

#[test]
fn every_flipped_bit_of_a_provider_receipt_is_refused() {
    let (client, provider) = (key(1), key(2));
    let bytes = ProviderReceipt::sign(body(&client, &provider), &provider)
        .unwrap()
        .to_bytes()
        .unwrap();
    for bit in 0..bytes.len() * 8 {
        let mut forged = bytes.clone();
        forged[bit / 8] ^= 1 << (bit % 8);
        assert!(ProviderReceipt::from_bytes(&forged).is_err(), "bit {bit}");
    }
}

#[test]
fn truncated_and_oversized_receipts_are_errors() {
    let bytes = signed_receipt().to_bytes().unwrap();
    for len in 0..bytes.len() {
        assert!(
            Receipt::from_bytes(&bytes[..len]).is_err(),
            "prefix of {len}"
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(Receipt::from_bytes(&long).is_err(), "trailing byte");
    let huge = vec![0u8; MAX_RECEIPT_LEN + 1];
    assert!(matches!(
        Receipt::from_bytes(&huge),
        Err(ReceiptError::Codec(
            agora_protocols::CodecError::TooLarge { .. }
        ))
    ));
}

#[test]
fn body_rules_hold_without_signatures() {
    let (client, provider) = (key(1), key(2));
    let mut b: ReceiptBody = body(&client, &provider);
    b.model = String::new();
    assert!(b.validate().is_err());
    let mut b = body(&client, &provider);
    b.model = "m".repeat(129);
    assert!(b.validate().is_err());
    let b = body(&client, &client);
    assert!(ProviderReceipt::sign(b, &client).is_err(), "self-dealing");
    let mut b = body(&client, &provider);
    b.answered_at_ms = b.requested_at_ms - 1;
    assert!(b.validate().is_err());
    let mut b = body(&client, &provider);
    b.version = 2;
    assert_eq!(b.validate(), Err(ReceiptError::UnsupportedVersion(2)));
}

#[test]
fn tasks_parse_and_print() {
    for task in [Task::Embed, Task::Generate] {
        assert_eq!(task.as_str().parse::<Task>().unwrap(), task);
    }
    assert!("dance".parse::<Task>().is_err());
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_receipt_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Receipt::from_bytes(&bytes);
        let _ = ProviderReceipt::from_bytes(&bytes);
    }

    #[test]
    fn any_valid_body_round_trips(price in any::<u64>(), nonce in any::<u64>(), subnet in any::<u16>(),
                                  model in "[a-z0-9-]{1,128}", at in 0u64..u64::MAX / 2, took in 0u64..1_000_000) {
        let (client, provider) = (key(7), key(8));
        let mut b = body(&client, &provider);
        b.price = price;
        b.nonce = nonce;
        b.subnet = subnet;
        b.model = model;
        b.requested_at_ms = at;
        b.answered_at_ms = at + took;
        let receipt = ProviderReceipt::sign(b.clone(), &provider).unwrap().countersign(&client).unwrap();
        let decoded = Receipt::from_bytes(&receipt.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(decoded.body(), &b);
    }
}
