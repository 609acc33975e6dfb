//! Targets for what arrives from the network: `/agora/query/1` frames, signed envelopes and their
//! payloads, receipts, Merkle proofs, gossip adverts and announcements, task payloads.

use crate::fixtures;
use agora_overlay::codec::{InboundPermit, QUERY_PROTOCOL, QueryCodec, QueryFrame};
use agora_overlay::providers::check_advert;
use agora_overlay::query::{check_answer, check_inbound_query, check_inbound_settle, peer_id_of};
use agora_protocols::codec;
use agora_protocols::merkle::LEAF_LEN;
use agora_protocols::signed::WireMessage;
use agora_protocols::{
    CapabilityAdvert, EmbedInput, EmbedOutput, GenerateInput, GenerateOutput, MerkleProof, Offer,
    Payload, ProviderReceipt, QueryAnnouncement, QueryRequest, QueryWireRequest, QueryWireResponse,
    Receipt, ReceiptBody, Signed, Task,
};
use futures::executor::block_on;
use futures::io::Cursor;
use libp2p::request_response::Codec as _;
use std::fmt::Debug;

/// Checks that `value` encodes back to exactly `bytes`: the codec has one encoding per value, so
/// content ids and signatures over bytes stay stable.
fn assert_canonical<T: serde::Serialize + Debug>(value: &T, bytes: &[u8]) {
    match codec::encode(value) {
        Ok(again) => assert_eq!(again, bytes, "{value:?} re-encodes differently"),
        Err(e) => panic_invariant(&format!("a decoded {value:?} does not encode: {e}")),
    }
}

#[allow(clippy::panic)]
fn panic_invariant(what: &str) -> ! {
    panic!("invariant broken: {what}")
}

/// The two ways a signed message type arrives: as a whole envelope (the signature is checked,
/// then the payload decoded), and as the payload inside one (what a valid signature lets
/// through). Random bytes almost never carry a valid signature, so the payload path signs what
/// decodes with a fixed key and checks that the envelope path accepts it unchanged.
fn signed_message<T>(data: &[u8], validate: fn(&T))
where
    T: WireMessage + Clone + PartialEq + Debug,
{
    if let Ok(signed) = Signed::<T>::from_bytes(data) {
        assert!(signed.payload_bytes().len() <= T::MAX_LEN);
        match signed.to_bytes() {
            Ok(bytes) => assert_eq!(bytes, data, "a verified envelope re-encodes differently"),
            Err(e) => panic_invariant(&format!("a verified envelope does not encode: {e}")),
        }
        validate(signed.value());
    }
    if let Ok(value) = codec::decode::<T>(data, T::MAX_LEN) {
        assert_canonical(&value, data);
        validate(&value);
        let key = fixtures::client();
        let signed = match Signed::sign(value.clone(), &key) {
            Ok(signed) => signed,
            Err(e) => panic_invariant(&format!("a decoded payload cannot be signed: {e}")),
        };
        assert_eq!(signed.payload_bytes(), data);
        let bytes = match signed.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => panic_invariant(&format!("a signed envelope does not encode: {e}")),
        };
        match Signed::<T>::from_bytes(&bytes) {
            Ok(back) => {
                assert_eq!(back.value(), &value);
                assert_eq!(back.signer(), key.public());
            }
            Err(e) => panic_invariant(&format!("a freshly signed {value:?} is refused: {e}")),
        }
    }
}

/// The provider side of `/agora/query/1`: a request frame as the overlay's codec reads it from a
/// stream, then what the overlay does with each kind (`check_inbound_query`,
/// `check_inbound_settle`, an offer's envelope) and the task input the model runner decodes.
pub fn query_wire_request(data: &[u8]) {
    let mut io = Cursor::new(data);
    // A fresh codec each time, so that one input's charge never refuses the next.
    let codec = QueryCodec::default();
    let (request, charged) = match block_on(codec.clone().read_request(&QUERY_PROTOCOL, &mut io)) {
        Ok(QueryFrame::Request { request, permit }) => {
            // The frame's bytes are charged from its length prefix, held until the permit goes,
            // then given back.
            let charged = permit.as_ref().map_or(0, InboundPermit::bytes);
            assert_eq!(codec.held_bytes(), charged);
            drop(permit);
            assert_eq!(codec.held_bytes(), 0);
            (request, charged)
        }
        // Nothing is held, so nothing within the limits is refused.
        Ok(QueryFrame::Refused(e)) => panic_invariant(&format!("refused within the limits: {e:?}")),
        Err(_) => return,
    };
    let frame_len = usize::try_from(io.position()).unwrap_or(usize::MAX);
    let body = data.get(4..frame_len).unwrap_or_default();
    assert_eq!(charged, body.len());
    assert_canonical(&request, body);
    match request {
        QueryWireRequest::Query(bytes) => {
            let Ok(signed) = Signed::<QueryRequest>::from_bytes(&bytes) else {
                return;
            };
            // As sent by the peer that signed it, so the checks after the signer's go on.
            let Ok(peer) = peer_id_of(&signed.signer()) else {
                return;
            };
            if let Ok(checked) = check_inbound_query(&peer, &bytes, fixtures::NOW_MS) {
                let q = checked.value();
                assert!(q.validate().is_ok() && q.deadline_ms >= fixtures::NOW_MS);
                match q.task {
                    Task::Embed => embed_input(&q.input),
                    Task::Generate => generate_input(&q.input),
                }
            }
        }
        QueryWireRequest::Offer(bytes) => {
            let _ = Signed::<Offer>::from_bytes(&bytes);
        }
        QueryWireRequest::Settle(bytes) => {
            let Ok(receipt) = Receipt::from_bytes(&bytes) else {
                return;
            };
            let Ok(peer) = peer_id_of(&receipt.body().client) else {
                return;
            };
            if let Ok(settled) = check_inbound_settle(&peer, &receipt.body().provider, &bytes) {
                assert!(settled.verify().is_ok());
            }
        }
    }
}

/// The client side of `/agora/query/1`: a response frame as the overlay's codec reads it, checked
/// by `check_answer` against the fixture request, and the output decoded as each task's output.
pub fn query_wire_response(data: &[u8]) {
    let mut io = Cursor::new(data);
    let Ok(response) = block_on(QueryCodec::default().read_response(&QUERY_PROTOCOL, &mut io))
    else {
        return;
    };
    let frame_len = usize::try_from(io.position()).unwrap_or(usize::MAX);
    assert_canonical(&response, data.get(4..frame_len).unwrap_or_default());
    if let QueryWireResponse::Answer { output, receipt } = &response {
        provider_receipt(receipt);
        embed_output(output);
        generate_output(output);
    }
    let request = fixtures::request();
    let Ok(peer) = peer_id_of(&fixtures::provider().public()) else {
        return;
    };
    if let Ok(answer) = check_answer(&peer, request, response) {
        let body = answer.receipt.body();
        assert_eq!(body.query_id, request.value().query_id);
        assert_eq!(body.client, request.signer());
        assert!(body.price <= request.value().max_price);
        assert!(answer.receipt.verify().is_ok());
    }
}

/// `Signed<QueryRequest>` (the `Query` frame's content) and the bare `QueryRequest`.
pub fn query_request(data: &[u8]) {
    signed_message::<QueryRequest>(data, |q| {
        let _ = q.validate();
    });
}

/// `Signed<QueryAnnouncement>` from the subnet's gossip topic, and the bare announcement.
pub fn query_announcement(data: &[u8]) {
    signed_message::<QueryAnnouncement>(data, |_| {});
}

/// `Signed<Offer>` (the `Offer` frame's content), and the bare offer.
pub fn offer(data: &[u8]) {
    signed_message::<Offer>(data, |_| {});
}

/// `Signed<CapabilityAdvert>` as the overlay checks it from gossip (`check_advert`), and the bare
/// advert with its bounds.
pub fn advert(data: &[u8]) {
    signed_message::<CapabilityAdvert>(data, |a| {
        let _ = a.validate();
        let _ = a.is_live(fixtures::NOW_MS);
    });
    if let Ok(signed) = Signed::<CapabilityAdvert>::from_bytes(data)
        && let Ok(source) = peer_id_of(&signed.signer())
        && let Ok(checked) = check_advert(&source, signed.value().subnet, data, fixtures::NOW_MS)
    {
        assert!(checked.value().validate().is_ok());
        assert!(checked.value().is_live(fixtures::NOW_MS));
    }
}

fn provider_receipt(data: &[u8]) {
    if let Ok(half) = ProviderReceipt::from_bytes(data) {
        assert!(half.verify().is_ok() && half.body().validate().is_ok());
        match half.to_bytes() {
            Ok(bytes) => assert_eq!(bytes, data),
            Err(e) => panic_invariant(&format!("a verified provider receipt: {e}")),
        }
    }
}

/// Receipts as they travel and are stored: the provider's half, the countersigned pair, and the
/// body alone.
pub fn receipt(data: &[u8]) {
    provider_receipt(data);
    if let Ok(full) = Receipt::from_bytes(data) {
        assert!(full.verify().is_ok());
        match full.to_bytes() {
            Ok(bytes) => assert_eq!(bytes, data),
            Err(e) => panic_invariant(&format!("a verified receipt does not encode: {e}")),
        }
        match full.to_bytes().map(|b| Receipt::from_bytes(&b)) {
            Ok(Ok(again)) => assert_eq!(again.id(), full.id()),
            _ => panic_invariant("a verified receipt does not decode again"),
        }
    }
    if let Ok(body) = codec::decode::<ReceiptBody>(data, agora_protocols::receipt::MAX_BODY_LEN) {
        assert_canonical(&body, data);
        let _ = body.validate();
    }
}

/// A Merkle inclusion proof, decoded and verified against the fixture trees. A proof that
/// verifies must be a proof of the tree's true leaf at its index: anything else is a forgery.
pub fn merkle_proof(data: &[u8]) {
    let Ok(proof) = MerkleProof::from_bytes(data) else {
        return;
    };
    assert_canonical(&proof, data);
    let per_chunk = agora_protocols::merkle::LEAVES_PER_CHUNK as u64;
    let position = usize::try_from(proof.leaf_index % per_chunk).unwrap_or(0);
    let claimed: [u8; LEAF_LEN] = proof.chunk.get(position).copied().unwrap_or([0; LEAF_LEN]);
    for tree in fixtures::merkle_trees() {
        if proof.verify(&tree.root(), &claimed).is_ok() {
            assert_eq!(
                proof.leaf_count,
                tree.len() as u64,
                "a proof for another tree size"
            );
            assert_eq!(
                claimed,
                fixtures::merkle_leaf(proof.leaf_index),
                "a proof of a leaf that is not in the tree"
            );
        }
        // The same proof for any other leaf must fail.
        let mut other = claimed;
        other[0] ^= 1;
        assert!(proof.verify(&tree.root(), &other).is_err());
    }
}

fn payload<T: Payload + Debug>(data: &[u8]) {
    if let Ok(value) = T::from_bytes(data) {
        assert!(value.validate().is_ok());
        assert_canonical(&value, data);
        match value.to_bytes() {
            Ok(bytes) => assert_eq!(bytes, data),
            Err(e) => panic_invariant(&format!("a valid payload {value:?} does not encode: {e}")),
        }
    }
}

/// `EmbedInput`, as a provider decodes a query's input.
pub fn embed_input(data: &[u8]) {
    payload::<EmbedInput>(data);
}

/// `EmbedOutput`, as a client decodes an answer.
pub fn embed_output(data: &[u8]) {
    payload::<EmbedOutput>(data);
}

/// `GenerateInput`, as a provider decodes a query's input.
pub fn generate_input(data: &[u8]) {
    payload::<GenerateInput>(data);
}

/// `GenerateOutput`, as a client decodes an answer.
pub fn generate_output(data: &[u8]) {
    payload::<GenerateOutput>(data);
}
