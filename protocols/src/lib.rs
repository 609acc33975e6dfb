//! Every byte that crosses the Agora network or lands in a file is defined here.
//!
//! This crate does no I/O and no async: it owns the wire types, the one codec that encodes and
//! decodes them ([`codec`]), the signed envelope that authenticates them ([`signed`]), the content ids
//! that name them ([`id`]), the two-party [`receipt`] that settles a query, and the blake3 [`merkle`]
//! tree whose roots are anchored on chain.
//!
//! Two rules hold throughout:
//! - every decode has a size limit and returns an error, never a panic, on any input;
//! - a signature always covers the exact bytes that were received, never a re-encoding of a decoded
//!   value, and always under a domain string naming the kind of message, so that a signature made for
//!   one purpose can never be replayed as another.

pub mod advert;
pub mod codec;
pub mod id;
pub mod keys;
pub mod merkle;
pub mod query;
pub mod receipt;
pub mod signed;
pub mod task;

pub use advert::{CapabilityAdvert, ModelOffer, Reachability};
pub use codec::{CodecError, decode, encode};
pub use id::ContentId;
pub use keys::{PublicKey, SecretKey, Signature};
pub use merkle::{MerkleProof, MerkleTree, ProofError};
pub use query::{
    Offer, QueryAnnouncement, QueryError, QueryErrorKind, QueryRequest, QueryWireRequest,
    QueryWireResponse,
};
pub use receipt::{ProviderReceipt, Receipt, ReceiptBody, ReceiptError, Task};
pub use signed::{Domain, SignError, Signed, WireMessage};
pub use task::{
    ChatMessage, EmbedInput, EmbedOutput, Finish, GenerateInput, GenerateOutput, Payload,
    PayloadError, Sampling,
};
