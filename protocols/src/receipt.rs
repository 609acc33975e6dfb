//! The receipt: the record, signed by both sides, that a provider answered a client's query at a price.
//!
//! The flow is two steps. The provider signs the [`ReceiptBody`] with its answer
//! ([`ProviderReceipt`]); the client checks that signature and the output, then countersigns
//! ([`Receipt`]). Both signatures cover the body's exact bytes; the client's also covers the
//! provider's signature, so a countersignature can never be attached to another provider statement.
//! The receipt id is a hash of the body alone, so both sides name the receipt identically from the
//! moment the provider signs it.

use crate::codec::{self, CodecError};
use crate::id::ContentId;
use crate::keys::{PublicKey, SecretKey, Signature};
use crate::signed::Domain;
use serde::{Deserialize, Serialize};

/// Version of [`ReceiptBody`]'s format.
pub const RECEIPT_VERSION: u16 = 1;
/// Longest model name accepted in a receipt, in bytes.
pub const MAX_MODEL_NAME_LEN: usize = 128;
/// Largest encoded body accepted.
pub const MAX_BODY_LEN: usize = 512;
/// Largest encoded receipt accepted (body, two signatures, length prefixes).
pub const MAX_RECEIPT_LEN: usize = MAX_BODY_LEN + 2 * 64 + 16;

const PROVIDER_DOMAIN: Domain = Domain::new("receipt/provider", RECEIPT_VERSION);
const CLIENT_DOMAIN: Domain = Domain::new("receipt/client", RECEIPT_VERSION);
const RECEIPT_ID_CONTEXT: &str = "agora 2026-11 receipt id v1";

/// What kind of work was bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Task {
    /// Sentence embedding.
    Embed,
    /// Text generation.
    Generate,
}

impl Task {
    /// The task's name as used in the CLI and in adverts.
    pub fn as_str(&self) -> &'static str {
        match self {
            Task::Embed => "embed",
            Task::Generate => "generate",
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Task {
    type Err = ReceiptError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "embed" => Ok(Task::Embed),
            "generate" => Ok(Task::Generate),
            other => Err(ReceiptError::Invalid(format!(
                "unknown task {other:?} (expected embed or generate)"
            ))),
        }
    }
}

/// What both parties sign: who served whom, what, for how much, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// Format version, [`RECEIPT_VERSION`].
    pub version: u16,
    /// The client's id for the query; unique per client.
    pub query_id: ContentId,
    /// Subnet the query was served on.
    pub subnet: u16,
    /// Kind of work.
    pub task: Task,
    /// Model that produced the output.
    pub model: String,
    /// [`ContentId::of_payload`] of the input.
    pub input_hash: ContentId,
    /// [`ContentId::of_payload`] of the output.
    pub output_hash: ContentId,
    /// Price paid, in units of 1e-9.
    pub price: u64,
    /// The client (payer).
    pub client: PublicKey,
    /// The provider (payee).
    pub provider: PublicKey,
    /// The client's nonce for the query, for replay protection.
    pub nonce: u64,
    /// When the client sent the query (milliseconds since the Unix epoch).
    pub requested_at_ms: u64,
    /// When the provider answered (milliseconds since the Unix epoch).
    pub answered_at_ms: u64,
}

/// Why a receipt was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    /// The bytes could not be decoded.
    #[error("cannot decode receipt: {0}")]
    Codec(#[from] CodecError),
    /// The body's version is not one this node speaks.
    #[error("receipt version {0} is not supported (this node speaks version {RECEIPT_VERSION})")]
    UnsupportedVersion(u16),
    /// A field breaks a rule of the format.
    #[error("invalid receipt: {0}")]
    Invalid(String),
    /// The provider's signature does not verify.
    #[error("the provider's signature on receipt {0} does not verify")]
    BadProviderSignature(ContentId),
    /// The client's countersignature does not verify.
    #[error("the client's countersignature on receipt {0} does not verify")]
    BadClientSignature(ContentId),
    /// A key tried to sign for a party it is not.
    #[error("this key is not the receipt's {role}")]
    WrongSigner {
        /// "client" or "provider".
        role: &'static str,
    },
}

impl ReceiptBody {
    /// Checks the rules that no signature can vouch for.
    pub fn validate(&self) -> Result<(), ReceiptError> {
        if self.version != RECEIPT_VERSION {
            return Err(ReceiptError::UnsupportedVersion(self.version));
        }
        if self.model.is_empty() || self.model.len() > MAX_MODEL_NAME_LEN {
            return Err(ReceiptError::Invalid(format!(
                "model name must be 1..={MAX_MODEL_NAME_LEN} bytes, got {}",
                self.model.len()
            )));
        }
        if self.client == self.provider {
            return Err(ReceiptError::Invalid(
                "client and provider are the same key".to_string(),
            ));
        }
        if self.answered_at_ms < self.requested_at_ms {
            return Err(ReceiptError::Invalid(
                "answered before it was requested".to_string(),
            ));
        }
        Ok(())
    }

    /// The body's canonical bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let body: ReceiptBody = codec::decode(bytes, MAX_BODY_LEN)?;
        body.validate()?;
        Ok(body)
    }
}

fn receipt_id(body_bytes: &[u8]) -> ContentId {
    ContentId::derive(RECEIPT_ID_CONTEXT, body_bytes)
}

#[derive(Serialize, Deserialize)]
struct ProviderWire {
    body: Vec<u8>,
    provider_signature: Signature,
}

#[derive(Serialize, Deserialize)]
struct ReceiptWire {
    body: Vec<u8>,
    provider_signature: Signature,
    client_signature: Signature,
}

/// A receipt signed by the provider only: what travels back with the answer.
///
/// It can only be made by [`ProviderReceipt::sign`] or by [`ProviderReceipt::from_bytes`], which
/// checks the signature, so a value of this type always carries a valid provider signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReceipt {
    body: ReceiptBody,
    body_bytes: Vec<u8>,
    provider_signature: Signature,
}

impl ProviderReceipt {
    /// The provider signs `body`. Fails if `provider` is not the body's provider.
    pub fn sign(body: ReceiptBody, provider: &SecretKey) -> Result<Self, ReceiptError> {
        body.validate()?;
        if provider.public() != body.provider {
            return Err(ReceiptError::WrongSigner { role: "provider" });
        }
        let body_bytes = body.to_bytes()?;
        let provider_signature = PROVIDER_DOMAIN.sign(provider, &body_bytes);
        Ok(Self {
            body,
            body_bytes,
            provider_signature,
        })
    }

    /// Decodes and verifies the provider's signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let wire: ProviderWire = codec::decode(bytes, MAX_RECEIPT_LEN)?;
        let body = ReceiptBody::from_bytes(&wire.body)?;
        let receipt = Self {
            body,
            body_bytes: wire.body,
            provider_signature: wire.provider_signature,
        };
        receipt.verify()?;
        Ok(receipt)
    }

    /// Canonical bytes for the wire.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(&ProviderWire {
            body: self.body_bytes.clone(),
            provider_signature: self.provider_signature,
        })
    }

    /// Checks the provider's signature over the body bytes.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        if PROVIDER_DOMAIN.verify(
            &self.body.provider,
            &self.body_bytes,
            &self.provider_signature,
        ) {
            Ok(())
        } else {
            Err(ReceiptError::BadProviderSignature(self.id()))
        }
    }

    /// The client countersigns. The provider's signature is already known good (see the type's
    /// invariant), so it is not checked a second time.
    pub fn countersign(self, client: &SecretKey) -> Result<Receipt, ReceiptError> {
        if client.public() != self.body.client {
            return Err(ReceiptError::WrongSigner { role: "client" });
        }
        let client_signature = CLIENT_DOMAIN.sign(
            client,
            &client_message(&self.body_bytes, &self.provider_signature),
        );
        Ok(Receipt {
            provider: self,
            client_signature,
        })
    }

    /// The signed body.
    pub fn body(&self) -> &ReceiptBody {
        &self.body
    }

    /// The receipt's id: a hash of the body's bytes.
    pub fn id(&self) -> ContentId {
        receipt_id(&self.body_bytes)
    }
}

fn client_message(body_bytes: &[u8], provider_signature: &Signature) -> Vec<u8> {
    let mut message = Vec::with_capacity(body_bytes.len() + 64);
    message.extend_from_slice(body_bytes);
    message.extend_from_slice(&provider_signature.0);
    message
}

/// A receipt signed by both sides: the unit of settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    provider: ProviderReceipt,
    client_signature: Signature,
}

impl Receipt {
    /// Decodes and verifies both signatures.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let wire: ReceiptWire = codec::decode(bytes, MAX_RECEIPT_LEN)?;
        let body = ReceiptBody::from_bytes(&wire.body)?;
        let receipt = Self {
            provider: ProviderReceipt {
                body,
                body_bytes: wire.body,
                provider_signature: wire.provider_signature,
            },
            client_signature: wire.client_signature,
        };
        receipt.verify()?;
        Ok(receipt)
    }

    /// Canonical bytes for the wire and the store.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(&ReceiptWire {
            body: self.provider.body_bytes.clone(),
            provider_signature: self.provider.provider_signature,
            client_signature: self.client_signature,
        })
    }

    /// Checks the provider's signature.
    pub fn verify_provider(&self) -> Result<(), ReceiptError> {
        self.provider.verify()
    }

    /// Checks the client's countersignature (over the body and the provider's signature).
    pub fn verify_client(&self) -> Result<(), ReceiptError> {
        let message = client_message(&self.provider.body_bytes, &self.provider.provider_signature);
        if CLIENT_DOMAIN.verify(&self.body().client, &message, &self.client_signature) {
            Ok(())
        } else {
            Err(ReceiptError::BadClientSignature(self.id()))
        }
    }

    /// Checks the pair: the body's rules and both signatures.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        self.body().validate()?;
        self.verify_provider()?;
        self.verify_client()
    }

    /// The signed body.
    pub fn body(&self) -> &ReceiptBody {
        &self.provider.body
    }

    /// The receipt's id: a hash of the body's bytes, the same as the [`ProviderReceipt`]'s.
    pub fn id(&self) -> ContentId {
        self.provider.id()
    }

    /// The provider's signature.
    pub fn provider_signature(&self) -> Signature {
        self.provider.provider_signature
    }

    /// The client's countersignature.
    pub fn client_signature(&self) -> Signature {
        self.client_signature
    }
}
