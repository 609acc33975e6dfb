//! Signed envelopes: domain separation, version checks, every flipped bit refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use agora_protocols::signed::{Domain, SignError, Signed, WireMessage};
use agora_protocols::{CodecError, PublicKey, codec};
use common::key;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Advert {
    model: String,
    price: u64,
    tags: Vec<u16>,
}

impl WireMessage for Advert {
    const DOMAIN: Domain = Domain::new("test/advert", 1);
    const MAX_LEN: usize = 256;
}

/// The same shape under another domain: a signature for one must not pass as the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Offer {
    model: String,
    price: u64,
    tags: Vec<u16>,
}

impl WireMessage for Offer {
    const DOMAIN: Domain = Domain::new("test/offer", 1);
    const MAX_LEN: usize = 256;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AdvertV2 {
    model: String,
    price: u64,
    tags: Vec<u16>,
}

impl WireMessage for AdvertV2 {
    const DOMAIN: Domain = Domain::new("test/advert", 2);
    const MAX_LEN: usize = 256;
}

fn advert() -> Advert {
    Advert {
        model: "all-minilm-l6-v2".into(),
        price: 1000,
        tags: vec![1, 2, 3],
    }
}

#[test]
fn a_signed_message_round_trips() {
    let signed = Signed::sign(advert(), &key(1)).unwrap();
    let bytes = signed.to_bytes().unwrap();
    let decoded = Signed::<Advert>::from_bytes(&bytes).unwrap();
    assert_eq!(decoded.value(), &advert());
    assert_eq!(decoded.signer(), key(1).public());
    assert_eq!(decoded.payload_bytes(), signed.payload_bytes());
}

#[test]
fn a_signature_does_not_cross_domains() {
    let bytes = Signed::sign(advert(), &key(1)).unwrap().to_bytes().unwrap();
    assert!(matches!(
        Signed::<Offer>::from_bytes(&bytes),
        Err(SignError::BadSignature {
            domain: "test/offer",
            ..
        })
    ));
}

#[test]
fn another_version_is_refused_by_name() {
    let bytes = Signed::sign(advert(), &key(1)).unwrap().to_bytes().unwrap();
    assert!(matches!(
        Signed::<AdvertV2>::from_bytes(&bytes),
        Err(SignError::UnsupportedVersion {
            got: 1,
            supported: 2,
            ..
        })
    ));
}

#[test]
fn every_flipped_bit_is_refused() {
    let bytes = Signed::sign(advert(), &key(1)).unwrap().to_bytes().unwrap();
    for bit in 0..bytes.len() * 8 {
        let mut forged = bytes.clone();
        forged[bit / 8] ^= 1 << (bit % 8);
        assert!(Signed::<Advert>::from_bytes(&forged).is_err(), "bit {bit}");
    }
}

#[test]
fn oversized_payloads_are_refused_both_ways() {
    let big = Advert {
        model: "x".repeat(300),
        price: 1,
        tags: vec![],
    };
    assert!(matches!(
        Signed::sign(big, &key(1)),
        Err(CodecError::TooLarge { .. })
    ));
    assert!(matches!(
        Signed::<Advert>::from_bytes(&vec![0u8; 10_000]),
        Err(SignError::Codec(CodecError::TooLarge { .. }))
    ));
}

#[test]
fn domain_signatures_bind_the_signer() {
    let domain = Domain::new("test/raw", 1);
    let signature = domain.sign(&key(1), b"hello");
    assert!(domain.verify(&key(1).public(), b"hello", &signature));
    assert!(!domain.verify(&key(2).public(), b"hello", &signature));
    assert!(!domain.verify(&key(1).public(), b"hellp", &signature));
    assert!(!Domain::new("test/raw", 2).verify(&key(1).public(), b"hello", &signature));
}

#[test]
fn codec_errors_say_what_went_wrong() {
    let bytes = codec::encode(&(7u32, String::from("abc"))).unwrap();
    assert_eq!(
        codec::decode::<(u32, String)>(&bytes[..5], 100),
        Err(CodecError::Truncated { len: 5 })
    );
    let mut long = bytes.clone();
    long.extend_from_slice(&[1, 2]);
    assert_eq!(
        codec::decode::<(u32, String)>(&long, 100),
        Err(CodecError::TrailingBytes { extra: 2 })
    );
    assert!(matches!(
        codec::decode::<(u32, String)>(&bytes, 3),
        Err(CodecError::TooLarge { len: 15, limit: 3 })
    ));
    // A length prefix that claims far more than the input holds is an error, not an allocation.
    let mut lying = 0u64.to_le_bytes().to_vec();
    lying[7] = 0x7f;
    assert!(codec::decode::<Vec<u64>>(&lying, 100).is_err());
}

#[test]
fn public_keys_reject_bad_points_and_bad_hex() {
    assert!(PublicKey::from_hex("zz").is_err());
    assert!(PublicKey::from_hex(&"00".repeat(31)).is_err());
    let k = key(3).public();
    assert_eq!(PublicKey::from_hex(&k.to_hex()).unwrap(), k);
    // y = 2 is not on the curve.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert!(PublicKey::from_bytes(&not_a_point).is_err());
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_envelope_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Signed::<Advert>::from_bytes(&bytes);
    }

    #[test]
    fn any_advert_round_trips(model in ".{0,60}", price in any::<u64>(), tags in proptest::collection::vec(any::<u16>(), 0..20)) {
        let value = Advert { model, price, tags };
        let bytes = Signed::sign(value.clone(), &key(9)).unwrap().to_bytes().unwrap();
        let decoded = Signed::<Advert>::from_bytes(&bytes).unwrap();
        prop_assert_eq!(decoded.value(), &value);
    }
}
