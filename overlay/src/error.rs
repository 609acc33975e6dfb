//! The overlay's errors: one enum, one line each, saying what to do.

use agora_protocols::QueryError;

/// What can go wrong in the overlay.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// A configuration value was refused by a libp2p component.
    #[error("bad overlay configuration: {0}")]
    Config(String),
    /// A transport could not be set up (port in use, bad address, no DNS resolver).
    #[error("transport: {0}")]
    Transport(String),
    /// The node identity could not be made from the key.
    #[error("identity: {0}")]
    Identity(String),
    /// The event loop is gone: the node was shut down.
    #[error("the overlay event loop has stopped")]
    Stopped,
    /// Too many requests are outstanding: wait for some to finish.
    #[error("too many outstanding {0}; try again shortly")]
    Overloaded(&'static str),
    /// A dial failed.
    #[error("cannot dial {0}")]
    Dial(String),
    /// The request could not be delivered or no answer came back in time.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer asked.
        peer: String,
        /// Why (timeout, connection closed, unsupported protocol, ...).
        reason: String,
    },
    /// The provider refused or failed the query, and said why.
    #[error("provider refused: {kind:?}: {message}", kind = .0.kind, message = .0.message)]
    Refused(QueryError),
    /// The answer does not match the query (wrong receipt, wrong hashes, wrong provider).
    #[error("bad answer from {peer}: {reason}")]
    BadAnswer {
        /// The provider.
        peer: String,
        /// What did not match.
        reason: String,
    },
    /// Nobody made an acceptable offer before the window closed.
    #[error("no acceptable offer for query {0}")]
    NoOffers(String),
    /// The DHT lookup failed.
    #[error("DHT lookup failed: {0}")]
    Dht(String),
    /// A message could not be encoded or signed.
    #[error("encode: {0}")]
    Encode(String),
}
