//! The cloneable handle through which the application talks to the event loop.
//!
//! Every method sends one `Command` over a bounded channel and, where there is an answer, waits on a
//! `oneshot`. Nothing here touches the swarm: the event loop owns it alone, so no lock is ever held
//! across a network operation.

use crate::config::SubnetOffer;
use crate::error::OverlayError;
use crate::providers::ProviderRow;
use crate::query::Answer;
use agora_protocols::{QueryAnnouncement, QueryRequest, QueryWireResponse, Receipt, Signed, Task};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// What the application hears from the overlay.
#[derive(Debug)]
pub enum Event {
    /// A query whose signature, signer and deadline have been checked. Answer it with
    /// [`Client::respond`] (build the answer with [`crate::answer`]); dropping `reply` unanswered
    /// makes the client time out.
    InboundQuery {
        /// The client.
        peer: PeerId,
        /// The verified request.
        request: Box<Signed<QueryRequest>>,
        /// Where the answer goes.
        reply: QueryReply,
    },
    /// A client's countersigned receipt for one of our answers: both signatures verified, we are its
    /// provider and the sending peer its client. Store it, then answer with
    /// [`QueryWireResponse::Settled`] through [`Client::respond`].
    InboundSettle {
        /// The client.
        peer: PeerId,
        /// The receipt signed by both sides.
        receipt: Box<Receipt>,
        /// Where the acknowledgement goes.
        reply: QueryReply,
    },
}

impl Event {
    /// The channel the event is answered on (for a node that refuses everything).
    pub fn into_reply(self) -> QueryReply {
        match self {
            Event::InboundQuery { reply, .. } | Event::InboundSettle { reply, .. } => reply,
        }
    }
}

/// The channel an inbound query is answered on. It holds the request's charge against the inbound
/// byte limits ([`crate::InboundLimits`]) until the answer is sent or the reply dropped.
#[derive(Debug)]
pub struct QueryReply {
    pub(crate) channel: ResponseChannel<QueryWireResponse>,
    pub(crate) permit: Option<crate::codec::InboundPermit>,
}

/// One peer as this node knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerRow {
    /// Peer id.
    pub peer: String,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Whether the peer is in our Kademlia routing table.
    pub in_routing_table: bool,
    /// Addresses known for it.
    pub addrs: Vec<String>,
    /// What it says it runs (from identify).
    pub agent: Option<String>,
    /// Last ping round trip, in milliseconds.
    pub rtt_ms: Option<u64>,
    /// Its gossipsub peer score (invalid messages lower it, consensus reputation raises it).
    #[serde(default)]
    pub gossip_score: Option<f64>,
}

/// A snapshot of the node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeStatus {
    /// Our peer id.
    pub peer_id: String,
    /// Addresses we listen on.
    pub listen_addrs: Vec<String>,
    /// Addresses others can reach us on (confirmed, relayed, or configured as such).
    pub external_addrs: Vec<String>,
    /// AutoNAT's verdict: "public", "private" or "unknown".
    pub nat: String,
    /// Kademlia mode: "server" or "client".
    pub kad_mode: String,
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Peers in the routing table.
    pub routing_table_peers: usize,
    /// Entries in the provider table.
    pub providers: usize,
    /// Relays holding a reservation for us.
    pub relays: Vec<String>,
    /// Bytes of inbound request frames held now, read and not yet answered (bounded by
    /// [`crate::InboundLimits::budget_bytes`]).
    #[serde(default)]
    pub inbound_bytes_held: usize,
    /// The most bytes of inbound request frames held at once since the node started.
    #[serde(default)]
    pub inbound_bytes_peak: usize,
    /// Peers banned now for sending forged or malformed messages (see `BanConfig`).
    #[serde(default)]
    pub banned: Vec<String>,
}

#[derive(Debug)]
pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        tx: oneshot::Sender<Result<(), OverlayError>>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
    },
    Status {
        tx: oneshot::Sender<NodeStatus>,
    },
    Peers {
        tx: oneshot::Sender<Vec<PeerRow>>,
    },
    Providers {
        task: Option<Task>,
        model: Option<String>,
        tx: oneshot::Sender<Vec<ProviderRow>>,
    },
    DhtProviders {
        subnet: u16,
        task: Task,
        model: String,
        tx: oneshot::Sender<Result<Vec<PeerId>, OverlayError>>,
    },
    SetOffers {
        offers: Vec<SubnetOffer>,
    },
    SetReputation {
        scores: Vec<(PeerId, f64)>,
    },
    Query {
        peer: PeerId,
        request: Box<Signed<QueryRequest>>,
        tx: oneshot::Sender<Result<Answer, OverlayError>>,
    },
    OpenQuery {
        announcement: Box<Signed<QueryAnnouncement>>,
        request: Box<Signed<QueryRequest>>,
        tx: oneshot::Sender<Result<(PeerId, Answer), OverlayError>>,
    },
    Respond {
        reply: QueryReply,
        response: Box<QueryWireResponse>,
    },
    Settle {
        peer: PeerId,
        receipt: Box<Receipt>,
        tx: oneshot::Sender<Result<bool, OverlayError>>,
    },
}

/// A cloneable handle on a running node.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
}

impl Client {
    async fn send(&self, command: Command) -> Result<(), OverlayError> {
        self.tx
            .send(command)
            .await
            .map_err(|_| OverlayError::Stopped)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, OverlayError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| OverlayError::Stopped)
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Dials an address (with or without `/p2p/<peer id>`). Returns once the dial has started.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), OverlayError> {
        self.ask(|tx| Command::Dial { addr, tx }).await?
    }

    /// Tells the node an address of `peer` (for example a `/p2p-circuit` one learned elsewhere).
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), OverlayError> {
        self.send(Command::AddAddress { peer, addr }).await
    }

    /// A snapshot of the node.
    pub async fn status(&self) -> Result<NodeStatus, OverlayError> {
        self.ask(|tx| Command::Status { tx }).await
    }

    /// Every peer known: connected ones and those in the routing table.
    pub async fn peers(&self) -> Result<Vec<PeerRow>, OverlayError> {
        self.ask(|tx| Command::Peers { tx }).await
    }

    /// Providers from the gossip-fed table, cheapest first.
    pub async fn providers(
        &self,
        task: Option<Task>,
        model: Option<String>,
    ) -> Result<Vec<ProviderRow>, OverlayError> {
        self.ask(|tx| Command::Providers { task, model, tx }).await
    }

    /// Providers of `(subnet, task, model)` from Kademlia provider records (the fallback).
    pub async fn dht_providers(
        &self,
        subnet: u16,
        task: Task,
        model: String,
    ) -> Result<Vec<PeerId>, OverlayError> {
        self.ask(|tx| Command::DhtProviders {
            subnet,
            task,
            model,
            tx,
        })
        .await?
    }

    /// Replaces what this node advertises (price, queue depth, models).
    pub async fn set_offers(&self, offers: Vec<SubnetOffer>) -> Result<(), OverlayError> {
        self.send(Command::SetOffers { offers }).await
    }

    /// Peers' consensus reputation, 0 to 1 (incentive over the subnet's highest): it becomes their
    /// gossipsub application score, so reputable peers are kept in the gossip mesh before
    /// unknown ones, and replaces what was set before.
    pub async fn set_reputation(&self, scores: Vec<(PeerId, f64)>) -> Result<(), OverlayError> {
        self.send(Command::SetReputation { scores }).await
    }

    /// Direct mode: sends a signed query to `peer` and returns its checked answer.
    pub async fn query(
        &self,
        peer: PeerId,
        request: Signed<QueryRequest>,
    ) -> Result<Answer, OverlayError> {
        self.ask(|tx| Command::Query {
            peer,
            request: Box::new(request),
            tx,
        })
        .await?
    }

    /// Open mode: gossips `announcement`, collects offers for the offer window, awards the best
    /// (cheapest, then shortest queue) and sends it `request`. Returns the winner and its answer.
    pub async fn open_query(
        &self,
        announcement: Signed<QueryAnnouncement>,
        request: Signed<QueryRequest>,
    ) -> Result<(PeerId, Answer), OverlayError> {
        self.ask(|tx| Command::OpenQuery {
            announcement: Box::new(announcement),
            request: Box::new(request),
            tx,
        })
        .await?
    }

    /// Sends our countersigned receipt to its provider; returns whether the provider had not seen it
    /// before. Call it after storing the receipt: the provider acknowledges only once it has too.
    pub async fn settle(&self, peer: PeerId, receipt: Receipt) -> Result<bool, OverlayError> {
        self.ask(|tx| Command::Settle {
            peer,
            receipt: Box::new(receipt),
            tx,
        })
        .await?
    }

    /// Answers an inbound query or settlement.
    pub async fn respond(
        &self,
        reply: QueryReply,
        response: QueryWireResponse,
    ) -> Result<(), OverlayError> {
        self.send(Command::Respond {
            reply,
            response: Box::new(response),
        })
        .await
    }
}
