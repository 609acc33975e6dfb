//! The libp2p node of the Agora mesh.
//!
//! Structured as rust-libp2p's `file-sharing` example: [`spawn`] builds the swarm and hands back a
//! cloneable [`Client`], a bounded stream of [`Event`]s (inbound queries, already verified) and the
//! [`EventLoop`] that owns the swarm (already running on the tokio runtime). Everything between them
//! is a bounded channel; every pending answer is in a bounded map keyed by the libp2p operation id.
//!
//! What a node does on its own, without being asked:
//! - joins the DHT through its bootstrap nodes (`/agora/kad/1.0.0`) and walks it to find peers;
//! - joins its subnets' gossip topics, checks every message before forwarding it (signature, author
//!   = gossip source, bounds, freshness) and keeps a provider table from capability adverts;
//! - if it serves models ([`Config::offers`]), gossips a signed advert every few seconds and keeps
//!   Kademlia provider records for them;
//! - answers open calls for its models with offers;
//! - asks AutoNAT whether it is reachable, turns Kademlia server mode on only if so, and when it is
//!   not, takes a relay reservation through a bootstrap node (then DCUtR tries a direct path).
//!
//! ```no_run
//! # async fn demo() -> Result<(), agora_overlay::OverlayError> {
//! let key = agora_protocols::SecretKey::generate();
//! let (client, mut events) = agora_overlay::spawn(&key, agora_overlay::Config::loopback(), None)?;
//! let status = client.status().await?;
//! println!("{} listening on {:?}", status.peer_id, status.listen_addrs);
//! while let Some(agora_overlay::Event::InboundQuery { request, reply, .. }) = events.recv().await {
//!     let output = blake3::hash(&request.value().input).as_bytes().to_vec();
//!     client.respond(reply, agora_overlay::answer(&key, &request, output, 0)).await?;
//! }
//! # Ok(()) }
//! ```

pub mod behaviour;
pub mod client;
pub mod codec;
pub mod config;
pub mod error;
pub mod event_loop;
pub mod metrics;
pub mod providers;
pub mod query;

pub use client::{Client, Event, NodeStatus, PeerRow, QueryReply};
pub use config::{
    BanConfig, Config, InboundLimits, KadMode, RelayMode, RelayServerLimits, SubnetOffer,
};
pub use error::OverlayError;
pub use event_loop::EventLoop;
pub use libp2p::{Multiaddr, PeerId};
pub use providers::{
    AdvertVerdict, ProviderRow, ProviderTable, advert_topic, announce_topic, check_advert,
    provider_key,
};
pub use query::{
    Answer, answer, check_answer, check_inbound_settle, error_response, keypair_of, now_ms,
    peer_id_of,
};

use agora_protocols::SecretKey;
use tokio::sync::mpsc;

/// Builds a node from its key (the hotkey: its peer id is the key's) and configuration, starts
/// listening and dialing, and spawns its event loop on the current tokio runtime.
///
/// With a `registry`, libp2p-metrics records swarm, identify, Kademlia, gossipsub, ping, relay and
/// DCUtR events into it, gossipsub records its own mesh metrics, and the event loop keeps
/// [`metrics::OverlayMetrics`] there. The event loop stops when every [`Client`] is dropped.
pub fn spawn(
    key: &SecretKey,
    config: Config,
    registry: Option<&mut prometheus_client::registry::Registry>,
) -> Result<(Client, mpsc::Receiver<Event>), OverlayError> {
    let (client, events, event_loop) = new(key, config, registry)?;
    tokio::spawn(event_loop.run());
    Ok((client, events))
}

/// Like [`spawn`], but hands the [`EventLoop`] back for the caller to run.
pub fn new(
    key: &SecretKey,
    config: Config,
    registry: Option<&mut prometheus_client::registry::Registry>,
) -> Result<(Client, mpsc::Receiver<Event>, EventLoop), OverlayError> {
    let keypair = keypair_of(key)?;
    let peer_id = keypair.public().to_peer_id();
    let mut registry = registry;
    let swarm = behaviour::build_swarm_with_metrics(keypair, &config, registry.as_deref_mut())?;
    let metrics = registry.as_deref_mut().map(libp2p::metrics::Metrics::new);
    let overlay_metrics = registry.map(metrics::OverlayMetrics::register);
    let (command_tx, command_rx) = mpsc::channel(config.command_buffer.max(1));
    let (event_tx, event_rx) = mpsc::channel(config.event_buffer.max(1));
    let mut event_loop = EventLoop::new(
        swarm,
        key.clone(),
        config,
        command_rx,
        event_tx,
        metrics,
        overlay_metrics,
    );
    event_loop.start()?;
    Ok((
        Client {
            tx: command_tx,
            peer_id,
        },
        event_rx,
        event_loop,
    ))
}
