//! Overlay wire types: every one round-trips inside a signed envelope, and no input panics a decoder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use agora_protocols::query::{MAX_WIRE_REQUEST_LEN, MAX_WIRE_RESPONSE_LEN};
use agora_protocols::{
    CapabilityAdvert, ContentId, ModelOffer, Offer, QueryAnnouncement, QueryError, QueryErrorKind,
    QueryRequest, QueryWireRequest, QueryWireResponse, Reachability, Signed, Task, codec,
};
use common::key;
use proptest::prelude::*;

fn advert() -> CapabilityAdvert {
    CapabilityAdvert {
        subnet: 1,
        offers: vec![ModelOffer {
            task: Task::Embed,
            model: "all-minilm-l6-v2".into(),
            price: 1000,
            queue_depth: 3,
            throughput_milli: 64_000,
        }],
        reachability: Reachability::Direct,
        addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        issued_at_ms: 1_764_000_000_000,
        ttl_ms: 30_000,
    }
}

fn request() -> QueryRequest {
    QueryRequest {
        query_id: ContentId::of_payload(b"q"),
        subnet: 1,
        task: Task::Generate,
        model: "smollm2-135m-instruct".into(),
        input: b"hello".to_vec(),
        max_price: 5000,
        nonce: 9,
        sent_at_ms: 10,
        deadline_ms: 20,
    }
}

fn announcement() -> QueryAnnouncement {
    QueryAnnouncement {
        query_id: ContentId::of_payload(b"q"),
        subnet: 1,
        task: Task::Embed,
        model: "all-minilm-l6-v2".into(),
        input_hash: ContentId::of_payload(b"hello"),
        input_len: 5,
        max_price: 100,
        deadline_ms: 99,
    }
}

fn offer() -> Offer {
    Offer {
        query_id: ContentId::of_payload(b"q"),
        price: 90,
        queue_depth: 0,
        valid_until_ms: 50,
    }
}

#[test]
fn signed_wire_types_round_trip_and_refuse_any_flipped_bit() {
    fn check<T: agora_protocols::WireMessage + Clone + PartialEq + std::fmt::Debug>(value: T) {
        let bytes = Signed::sign(value.clone(), &key(4))
            .unwrap()
            .to_bytes()
            .unwrap();
        assert_eq!(Signed::<T>::from_bytes(&bytes).unwrap().value(), &value);
        for bit in 0..bytes.len() * 8 {
            let mut forged = bytes.clone();
            forged[bit / 8] ^= 1 << (bit % 8);
            assert!(Signed::<T>::from_bytes(&forged).is_err(), "bit {bit}");
        }
    }
    check(advert());
    check(request());
    check(announcement());
    check(offer());
}

#[test]
fn request_response_frames_round_trip() {
    let requests = [
        QueryWireRequest::Query(vec![1, 2, 3]),
        QueryWireRequest::Offer(vec![]),
        QueryWireRequest::Settle(vec![9; 300]),
    ];
    for r in requests {
        let bytes = codec::encode(&r).unwrap();
        assert_eq!(
            codec::decode::<QueryWireRequest>(&bytes, MAX_WIRE_REQUEST_LEN).unwrap(),
            r
        );
    }
    let responses = [
        QueryWireResponse::Answer {
            output: vec![7; 100],
            receipt: vec![8; 10],
        },
        QueryWireResponse::OfferNoted { awarded: true },
        QueryWireResponse::Settled { new: true },
        QueryWireResponse::Error(QueryError {
            kind: QueryErrorKind::Busy,
            message: "queue full".into(),
        }),
    ];
    for r in responses {
        let bytes = codec::encode(&r).unwrap();
        assert_eq!(
            codec::decode::<QueryWireResponse>(&bytes, MAX_WIRE_RESPONSE_LEN).unwrap(),
            r
        );
    }
}

#[test]
fn validation_catches_what_the_size_limit_does_not() {
    assert!(advert().validate().is_ok());
    let mut a = advert();
    a.offers.clear();
    assert!(a.validate().is_err());
    let mut a = advert();
    a.addrs = vec!["/ip4/1.2.3.4/tcp/1".into(); 9];
    assert!(a.validate().is_err());
    assert!(advert().is_live(1_764_000_030_000));
    assert!(!advert().is_live(1_764_000_030_001));
    let mut r = request();
    assert!(r.validate().is_ok());
    r.deadline_ms = 5;
    assert!(r.validate().is_err());
}

proptest! {
    #[test]
    fn random_bytes_never_panic_any_wire_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Signed::<CapabilityAdvert>::from_bytes(&bytes);
        let _ = Signed::<QueryRequest>::from_bytes(&bytes);
        let _ = Signed::<QueryAnnouncement>::from_bytes(&bytes);
        let _ = Signed::<Offer>::from_bytes(&bytes);
        let _ = codec::decode::<QueryWireRequest>(&bytes, MAX_WIRE_REQUEST_LEN);
        let _ = codec::decode::<QueryWireResponse>(&bytes, MAX_WIRE_RESPONSE_LEN);
    }
}
