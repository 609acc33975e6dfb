//! Query-protocol logic that is independent of the swarm: checking an inbound request, building a
//! signed answer, and checking that an answer belongs to the query that was sent.
//!
//! Kept apart from the event loop so it can be tested without sockets, and so that the rules a
//! provider applies before work starts sit in one readable place.

use crate::error::OverlayError;
use agora_protocols::{
    ContentId, ProviderReceipt, PublicKey, QueryError, QueryErrorKind, QueryRequest,
    QueryWireResponse, Receipt, ReceiptBody, SecretKey, Signed, receipt::RECEIPT_VERSION,
};
use libp2p::{PeerId, identity};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The libp2p peer id of an Agora key: the hotkey and the transport identity are one key.
pub fn peer_id_of(key: &PublicKey) -> Result<PeerId, OverlayError> {
    let public = identity::ed25519::PublicKey::try_from_bytes(&key.to_bytes())
        .map_err(|e| OverlayError::Identity(e.to_string()))?;
    Ok(identity::PublicKey::from(public).to_peer_id())
}

/// The libp2p keypair of an Agora secret key (same as `agora_wallet::libp2p_keypair`, repeated
/// here so that the overlay does not depend on the wallet crate).
pub fn keypair_of(key: &SecretKey) -> Result<identity::Keypair, OverlayError> {
    let mut seed = zeroize::Zeroizing::new(key.seed());
    identity::Keypair::ed25519_from_bytes(seed.as_mut_slice())
        .map_err(|e| OverlayError::Identity(e.to_string()))
}

fn refuse(kind: QueryErrorKind, message: impl Into<String>) -> QueryError {
    let mut message = message.into();
    message.truncate(agora_protocols::query::MAX_ERROR_MESSAGE_LEN);
    QueryError { kind, message }
}

/// Checks an inbound `Query` frame: a valid signature, by the peer that sent it, well-formed, and not
/// past its deadline. What passes is handed to the application; what fails is answered here with an
/// error that says why.
pub fn check_inbound_query(
    peer: &PeerId,
    bytes: &[u8],
    now_ms: u64,
) -> Result<Signed<QueryRequest>, QueryError> {
    let request = Signed::<QueryRequest>::from_bytes(bytes)
        .map_err(|e| refuse(QueryErrorKind::BadSignature, e.to_string()))?;
    // The signer is the party that pays and countersigns the receipt; it must be the peer on the
    // connection, or anyone could replay a captured request and bill its signer.
    match peer_id_of(&request.signer()) {
        Ok(signer) if signer == *peer => {}
        _ => {
            return Err(refuse(
                QueryErrorKind::BadSignature,
                "the request is signed by a key other than the sending peer's",
            ));
        }
    }
    request
        .value()
        .validate()
        .map_err(|e| refuse(QueryErrorKind::BadInput, e))?;
    if request.value().deadline_ms < now_ms {
        return Err(refuse(
            QueryErrorKind::Expired,
            format!(
                "deadline passed {} ms ago",
                now_ms - request.value().deadline_ms
            ),
        ));
    }
    Ok(request)
}

/// Checks an inbound `Settle` frame: a receipt signed by both sides, in which we are the provider and
/// the sending peer is the client. Anything else is refused here, so the application only ever sees
/// countersignatures meant for it.
pub fn check_inbound_settle(
    peer: &PeerId,
    local: &PublicKey,
    bytes: &[u8],
) -> Result<Receipt, QueryError> {
    let receipt = Receipt::from_bytes(bytes)
        .map_err(|e| refuse(QueryErrorKind::BadSignature, e.to_string()))?;
    if receipt.body().provider != *local {
        return Err(refuse(
            QueryErrorKind::BadInput,
            "the receipt names another provider",
        ));
    }
    if peer_id_of(&receipt.body().client).ok().as_ref() != Some(peer) {
        return Err(refuse(
            QueryErrorKind::BadSignature,
            "the receipt's client is not the sending peer",
        ));
    }
    Ok(receipt)
}

/// The provider's answer: the output plus its signed half of the receipt.
pub fn answer(
    provider: &SecretKey,
    request: &Signed<QueryRequest>,
    output: Vec<u8>,
    price: u64,
) -> QueryWireResponse {
    let q = request.value();
    let body = ReceiptBody {
        version: RECEIPT_VERSION,
        query_id: q.query_id,
        subnet: q.subnet,
        task: q.task,
        model: q.model.clone(),
        input_hash: ContentId::of_payload(&q.input),
        output_hash: ContentId::of_payload(&output),
        price,
        client: request.signer(),
        provider: provider.public(),
        nonce: q.nonce,
        requested_at_ms: q.sent_at_ms,
        answered_at_ms: now_ms().max(q.sent_at_ms),
    };
    match ProviderReceipt::sign(body, provider).and_then(|r| Ok(r.to_bytes()?)) {
        Ok(receipt) => QueryWireResponse::Answer { output, receipt },
        Err(e) => QueryWireResponse::Error(refuse(QueryErrorKind::Internal, e.to_string())),
    }
}

/// An error answer.
pub fn error_response(kind: QueryErrorKind, message: impl Into<String>) -> QueryWireResponse {
    QueryWireResponse::Error(refuse(kind, message))
}

/// A checked answer: the output and the provider's verified receipt for exactly this query.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The output payload.
    pub output: Vec<u8>,
    /// The provider-signed receipt; the client countersigns it.
    pub receipt: ProviderReceipt,
}

/// Checks that `response` from `peer` answers `request`: the receipt verifies, is the provider's (the
/// peer's own key), names this query, this input and this output, and charges no more than allowed.
pub fn check_answer(
    peer: &PeerId,
    request: &Signed<QueryRequest>,
    response: QueryWireResponse,
) -> Result<Answer, OverlayError> {
    let bad = |reason: &str| OverlayError::BadAnswer {
        peer: peer.to_string(),
        reason: reason.to_string(),
    };
    match response {
        QueryWireResponse::Answer { output, receipt } => {
            let receipt = ProviderReceipt::from_bytes(&receipt).map_err(|e| bad(&e.to_string()))?;
            let body = receipt.body();
            let q = request.value();
            if peer_id_of(&body.provider).ok().as_ref() != Some(peer) {
                return Err(bad(
                    "the receipt is signed by a key other than the provider's",
                ));
            }
            if body.query_id != q.query_id || body.client != request.signer() {
                return Err(bad("the receipt names another query"));
            }
            if body.input_hash != ContentId::of_payload(&q.input) {
                return Err(bad("the receipt's input hash is not our input's"));
            }
            if body.output_hash != ContentId::of_payload(&output) {
                return Err(bad("the receipt's output hash is not the output's"));
            }
            if body.price > q.max_price {
                return Err(bad("the price is over our maximum"));
            }
            Ok(Answer { output, receipt })
        }
        QueryWireResponse::Error(e) => Err(OverlayError::Refused(e)),
        QueryWireResponse::OfferNoted { .. } | QueryWireResponse::Settled { .. } => {
            Err(bad("an acknowledgement where an answer was due"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use agora_protocols::Task;

    fn request(client: &SecretKey, deadline_ms: u64) -> Signed<QueryRequest> {
        Signed::sign(
            QueryRequest {
                query_id: ContentId::of_payload(b"q"),
                subnet: 1,
                task: Task::Embed,
                model: "m".into(),
                input: b"hello".to_vec(),
                max_price: 10,
                nonce: 1,
                sent_at_ms: 1,
                deadline_ms,
            },
            client,
        )
        .unwrap()
    }

    #[test]
    fn inbound_checks_signer_and_deadline() {
        let client = SecretKey::generate();
        let peer = peer_id_of(&client.public()).unwrap();
        let bytes = request(&client, u64::MAX).to_bytes().unwrap();
        assert!(check_inbound_query(&peer, &bytes, now_ms()).is_ok());

        let other = PeerId::random();
        let err = check_inbound_query(&other, &bytes, now_ms()).unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::BadSignature);

        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let err = check_inbound_query(&peer, &flipped, now_ms()).unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::BadSignature);

        let expired = request(&client, 2).to_bytes().unwrap();
        let err = check_inbound_query(&peer, &expired, now_ms()).unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::Expired);
    }

    #[test]
    fn answers_round_trip_and_tampering_is_caught() {
        let client = SecretKey::generate();
        let provider = SecretKey::generate();
        let provider_peer = peer_id_of(&provider.public()).unwrap();
        let req = request(&client, u64::MAX);
        let output = blake3::hash(b"hello").as_bytes().to_vec();
        let response = answer(&provider, &req, output.clone(), 7);
        let ok = check_answer(&provider_peer, &req, response.clone()).unwrap();
        assert_eq!(ok.output, output);

        // Same answer claimed by another peer.
        assert!(check_answer(&PeerId::random(), &req, response.clone()).is_err());
        // Output swapped after signing.
        let QueryWireResponse::Answer { receipt, .. } = response else {
            panic!()
        };
        let forged = QueryWireResponse::Answer {
            output: b"other".to_vec(),
            receipt: receipt.clone(),
        };
        assert!(check_answer(&provider_peer, &req, forged).is_err());
        // Over budget.
        let pricey = answer(&provider, &req, output, 11);
        assert!(check_answer(&provider_peer, &req, pricey).is_err());
    }
}
