//! The query protocol: a client asks a provider for work, directly or through an open call.
//!
//! Direct mode: the client sends a signed [`QueryRequest`] over request-response and gets a
//! [`QueryWireResponse`]. Open mode: the client gossips a signed [`QueryAnnouncement`] (no payload, only
//! its hash and size), providers answer with a signed [`Offer`] over request-response, and the client
//! awards one by sending it the [`QueryRequest`]. Payloads never travel on gossip.

use crate::id::ContentId;
use crate::receipt::{MAX_MODEL_NAME_LEN, Task};
use crate::signed::{Domain, WireMessage};
use serde::{Deserialize, Serialize};

/// Format version of the query messages.
pub const QUERY_VERSION: u16 = 1;
/// Largest query input accepted (4 MiB).
pub const MAX_INPUT_LEN: usize = 4 * 1024 * 1024;
/// Largest query output accepted (16 MiB).
pub const MAX_OUTPUT_LEN: usize = 16 * 1024 * 1024;
/// Longest error message carried back.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;

/// A client's request for work. Signed by the client with [`crate::Signed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// The client's id for this query, unique per client.
    pub query_id: ContentId,
    /// Subnet the query is for.
    pub subnet: u16,
    /// Kind of work.
    pub task: Task,
    /// Model to run.
    pub model: String,
    /// The input payload, in the task's format.
    pub input: Vec<u8>,
    /// The most the client will pay, in units of 1e-9.
    pub max_price: u64,
    /// Strictly increasing per client; with the replay window it stops replays.
    pub nonce: u64,
    /// When the client sent it (milliseconds since the Unix epoch).
    pub sent_at_ms: u64,
    /// After this instant the answer is worthless to the client and must not be charged.
    pub deadline_ms: u64,
}

impl WireMessage for QueryRequest {
    const DOMAIN: Domain = Domain::new("query/request", QUERY_VERSION);
    const MAX_LEN: usize = MAX_INPUT_LEN + 1024;
}

impl QueryRequest {
    /// Checks the bounds that the codec's size limit alone does not express.
    pub fn validate(&self) -> Result<(), String> {
        if self.model.is_empty() || self.model.len() > MAX_MODEL_NAME_LEN {
            return Err(format!("model name of {} bytes", self.model.len()));
        }
        if self.input.len() > MAX_INPUT_LEN {
            return Err(format!(
                "input of {} bytes is over {MAX_INPUT_LEN}",
                self.input.len()
            ));
        }
        if self.deadline_ms < self.sent_at_ms {
            return Err("deadline before the send time".to_string());
        }
        Ok(())
    }
}

/// An open call for offers, gossiped on the subnet's topic. Signed by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryAnnouncement {
    /// The query's id; the later [`QueryRequest`] carries the same.
    pub query_id: ContentId,
    /// Subnet.
    pub subnet: u16,
    /// Kind of work.
    pub task: Task,
    /// Model to run.
    pub model: String,
    /// [`ContentId::of_payload`] of the input that will be sent to the winner.
    pub input_hash: ContentId,
    /// Size of that input in bytes.
    pub input_len: u32,
    /// The most the client will pay.
    pub max_price: u64,
    /// Offers after this instant are ignored (milliseconds since the Unix epoch).
    pub deadline_ms: u64,
}

impl WireMessage for QueryAnnouncement {
    const DOMAIN: Domain = Domain::new("query/announcement", QUERY_VERSION);
    const MAX_LEN: usize = 1024;
}

/// A provider's answer to an announcement. Signed by the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The announced query.
    pub query_id: ContentId,
    /// The price asked, at most the announcement's `max_price`.
    pub price: u64,
    /// Queries ahead of this one at the provider.
    pub queue_depth: u32,
    /// How long the offer holds (milliseconds since the Unix epoch).
    pub valid_until_ms: u64,
}

impl WireMessage for Offer {
    const DOMAIN: Domain = Domain::new("query/offer", QUERY_VERSION);
    const MAX_LEN: usize = 256;
}

/// Why a provider refused or failed a query. Each says what the client can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryErrorKind {
    /// The model's queue is full: try another provider or later.
    Busy,
    /// The provider does not serve that model on that subnet.
    UnknownModel,
    /// The provider's price is above the client's maximum, or the client's credit is exhausted.
    OverBudget,
    /// The request's signature does not verify.
    BadSignature,
    /// The deadline passed before the work could be done.
    Expired,
    /// The nonce was already used or is outside the replay window.
    Replay,
    /// Too many requests from this peer: back off.
    RateLimited,
    /// The input is not valid for the task.
    BadInput,
    /// The provider failed while running the model.
    Internal,
}

/// A refusal with a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryError {
    /// What went wrong.
    pub kind: QueryErrorKind,
    /// Why, in words (at most [`MAX_ERROR_MESSAGE_LEN`] bytes).
    pub message: String,
}

/// What a request-response exchange on `/agora/query/1` carries from the asking side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryWireRequest {
    /// A signed [`QueryRequest`], as [`crate::Signed`] envelope bytes: run it.
    Query(Vec<u8>),
    /// A signed [`Offer`], as envelope bytes, from a provider to an announcing client.
    Offer(Vec<u8>),
    /// The client's countersigned [`crate::Receipt`] for an answer it accepted, so that the provider
    /// holds the receipt signed by both sides. Sent after the client stored it.
    Settle(Vec<u8>),
}

/// What comes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryWireResponse {
    /// The output and the provider's half of the receipt ([`crate::ProviderReceipt`] bytes).
    Answer {
        /// The output payload.
        output: Vec<u8>,
        /// The provider-signed receipt over the input and output hashes.
        receipt: Vec<u8>,
    },
    /// The client noted an offer; `awarded` says whether the query will follow.
    OfferNoted {
        /// Whether this provider won the award.
        awarded: bool,
    },
    /// The provider stored the countersigned receipt (`new` is false when it already had it).
    Settled {
        /// Whether this was the first time the provider saw the countersignature.
        new: bool,
    },
    /// The request was refused or failed.
    Error(QueryError),
}

/// Largest encoded request on the wire.
pub const MAX_WIRE_REQUEST_LEN: usize = MAX_INPUT_LEN + 4096;
/// Largest encoded response on the wire.
pub const MAX_WIRE_RESPONSE_LEN: usize = MAX_OUTPUT_LEN + 4096;
