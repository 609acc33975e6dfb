//! The one `NetworkBehaviour` of an Agora node and the swarm built around it.
//!
//! One field per protocol, optional parts behind [`Toggle`] (as `libp2p-server` does): a bootstrap
//! node turns the relay server on, every node has the relay client (the swarm builder adds its
//! transport), DCUtR can be switched off. Transports: TCP+Noise+Yamux (kept so that js-libp2p peers
//! can join), QUIC, DNS, and the relay circuit transport.

use crate::codec::{QUERY_PROTOCOL, QueryCodec};
use crate::config::{Config, KadMode};
use crate::error::OverlayError;
use libp2p::core::Endpoint;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::transport::PortUse;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use libp2p::{
    StreamProtocol, Swarm, Transport, allow_block_list, autonat, connection_limits, dcutr,
    gossipsub, identify, identity, kad, noise, ping, relay, request_response, tcp, yamux,
};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Kademlia's protocol name: our own DHT, separate from the IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/kad/1.0.0");
/// Identify's protocol version string.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/agora/1.0.0";

/// Everything an Agora node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Refuses every connection of a banned peer (bans expire: see `BanConfig`).
    pub banned: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Refuses connections past the configured counts before any protocol sees them.
    pub limits: connection_limits::Behaviour,
    /// Peers tell each other their listen addresses and what they observe of us.
    pub identify: identify::Behaviour,
    /// Liveness and round-trip times.
    pub ping: ping::Behaviour,
    /// The DHT: peer discovery and provider records.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Adverts and open-call announcements.
    pub gossipsub: gossipsub::Behaviour,
    /// `/agora/query/1`: queries, offers and answers.
    pub query: QueryBehaviour,
    /// Are we publicly reachable? Also answers others' probes.
    pub autonat: autonat::Behaviour,
    /// Relay server (bootstrap nodes only).
    pub relay_server: Toggle<relay::Behaviour>,
    /// Relay client: reservations and circuits through a relay.
    pub relay_client: relay::client::Behaviour,
    /// Hole punching over relayed connections.
    pub dcutr: Toggle<dcutr::Behaviour>,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").finish_non_exhaustive()
    }
}

/// `/agora/query/1`'s request-response behaviour, telling the codec which peer each connection
/// belongs to.
///
/// libp2p gives a connection's handler a clone of the behaviour's codec and never tells the codec
/// whose connection it is; the inbound limits are per peer. So this names the peer to the codec
/// just before the inner behaviour makes the handler (and clones the codec), and clears it after.
/// Everything else is the inner behaviour's, reachable through `Deref`.
pub struct QueryBehaviour {
    inner: request_response::Behaviour<QueryCodec>,
    /// Shares its counters with every clone in every handler.
    codec: QueryCodec,
}

impl std::fmt::Debug for QueryBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryBehaviour")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl QueryBehaviour {
    /// Bytes of inbound request frames held now (see [`crate::config::InboundLimits`]).
    pub fn inbound_held_bytes(&self) -> usize {
        self.codec.held_bytes()
    }

    /// The most bytes of inbound request frames held at once so far.
    pub fn inbound_peak_bytes(&self) -> usize {
        self.codec.peak_bytes()
    }
}

impl std::ops::Deref for QueryBehaviour {
    type Target = request_response::Behaviour<QueryCodec>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for QueryBehaviour {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl NetworkBehaviour for QueryBehaviour {
    type ConnectionHandler =
        <request_response::Behaviour<QueryCodec> as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = <request_response::Behaviour<QueryCodec> as NetworkBehaviour>::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.codec.for_next_connection(Some(peer));
        let handler = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        );
        self.codec.for_next_connection(None);
        handler
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.codec.for_next_connection(Some(peer));
        let handler = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        );
        self.codec.for_next_connection(None);
        handler
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

/// The gossipsub message id: a blake3 hash of the data. Content ids are computed the same way by
/// every implementation (unlike source+seqno), and identical messages are deduplicated.
fn content_message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    gossipsub::MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
}

/// Per-topic scoring: reward first deliveries, punish invalid messages hard. Mesh delivery quotas
/// are off: adverts come every few seconds from a few providers, and a quota would punish honest
/// peers on a quiet topic.
fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.5,
        ..gossipsub::TopicScoreParams::default()
    }
}

fn gossipsub_behaviour(
    keypair: &identity::Keypair,
    config: &Config,
    registry: Option<&mut prometheus_client::registry::Registry>,
) -> Result<gossipsub::Behaviour, OverlayError> {
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .message_id_fn(content_message_id)
        .validate_messages()
        .max_transmit_size(config.max_gossip_len)
        .heartbeat_interval(Duration::from_secs(1))
        .build()
        .map_err(|e| OverlayError::Config(format!("gossipsub: {e}")))?;
    let mut behaviour = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossip_config,
    )
    .map_err(|e| OverlayError::Config(format!("gossipsub: {e}")))?;
    // Gossipsub's own metrics: mesh size, subscriptions and validation verdicts per topic (topics
    // are bounded by its `max_topics`), under `agora_libp2p_gossipsub_*`.
    if let Some(registry) = registry {
        let mut metrics_config = gossipsub::MetricsConfig::default();
        metrics_config.buckets_using_scoring_thresholds(&gossipsub::PeerScoreThresholds::default());
        behaviour = behaviour.with_metrics(
            registry.sub_registry_with_prefix("libp2p_gossipsub"),
            metrics_config,
        );
    }

    let mut params = gossipsub::PeerScoreParams::default();
    if config.exempt_loopback_from_colocation {
        params.ip_colocation_factor_whitelist = HashSet::from([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]);
    }
    for subnet in config.all_subnets() {
        for topic in [
            crate::providers::advert_topic(subnet),
            crate::providers::announce_topic(subnet),
        ] {
            params.topics.insert(
                gossipsub::IdentTopic::new(topic).hash(),
                topic_score_params(),
            );
        }
    }
    behaviour
        .with_peer_score(params, gossipsub::PeerScoreThresholds::default())
        .map_err(|e| OverlayError::Config(format!("gossipsub scoring: {e}")))?;
    Ok(behaviour)
}

fn relay_server_config(limits: &crate::config::RelayServerLimits) -> relay::Config {
    relay::Config {
        max_reservations: limits.max_reservations,
        max_reservations_per_peer: limits.max_reservations_per_peer,
        reservation_duration: limits.reservation_duration,
        max_circuits: limits.max_circuits,
        max_circuits_per_peer: limits.max_circuits_per_peer,
        max_circuit_duration: limits.max_circuit_duration,
        max_circuit_bytes: limits.max_circuit_bytes,
        ..relay::Config::default()
    }
}

impl Behaviour {
    fn new(
        keypair: &identity::Keypair,
        relay_client: relay::client::Behaviour,
        config: &Config,
        registry: Option<&mut prometheus_client::registry::Registry>,
    ) -> Result<Self, OverlayError> {
        let peer_id = keypair.public().to_peer_id();

        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(config.max_established))
                .with_max_established_per_peer(Some(config.max_established_per_peer))
                .with_max_pending_incoming(Some(config.max_pending_connections))
                .with_max_pending_outgoing(Some(config.max_pending_connections)),
        );

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_string(), keypair.public())
                .with_agent_version(config.agent_version.clone())
                .with_push_listen_addr_updates(true),
        );

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_query_timeout(Duration::from_secs(30))
            .set_provider_record_ttl(Some(Duration::from_secs(24 * 60 * 60)))
            .set_provider_publication_interval(Some(Duration::from_secs(10 * 60)))
            .set_periodic_bootstrap_interval(Some(
                config.discovery_interval.max(Duration::from_secs(5)),
            ));
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        kad.set_mode(Some(match config.kad_mode {
            KadMode::Server => kad::Mode::Server,
            // Auto starts as a client; the event loop promotes it when AutoNAT says public.
            KadMode::Auto | KadMode::Client => kad::Mode::Client,
        }));

        let codec = QueryCodec::new(config.inbound.clone());
        let query = QueryBehaviour {
            inner: request_response::Behaviour::with_codec(
                codec.clone(),
                [(QUERY_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(config.request_timeout)
                    .with_max_concurrent_streams(256),
            ),
            codec,
        };

        let autonat = autonat::Behaviour::new(
            peer_id,
            autonat::Config {
                only_global_ips: config.autonat_only_global_ips,
                boot_delay: Duration::from_secs(5),
                retry_interval: Duration::from_secs(30),
                refresh_interval: Duration::from_secs(5 * 60),
                ..autonat::Config::default()
            },
        );

        let relay_server = config.relay_server.as_ref().map(|limits| {
            let mut relay = relay::Behaviour::new(peer_id, relay_server_config(limits));
            // Running a relay is the operator's decision; do not wait for AutoNAT to confirm an
            // external address before offering the hop protocol.
            relay.set_status(Some(relay::Status::Enable));
            relay
        });

        let dcutr = config.dcutr.then(|| dcutr::Behaviour::new(peer_id));

        Ok(Self {
            banned: allow_block_list::Behaviour::default(),
            limits,
            identify,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            kad,
            gossipsub: gossipsub_behaviour(keypair, config, registry)?,
            query,
            autonat,
            relay_server: relay_server.into(),
            relay_client,
            dcutr: dcutr.into(),
        })
    }
}

/// TCP with noise and yamux, as `SwarmBuilder::with_tcp` builds it, but with `TCP_USER_TIMEOUT` set
/// on every connection, dialed or accepted (see [`Config::tcp_user_timeout`]).
fn tcp_transport(
    key: &identity::Keypair,
    user_timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true)).map(
        move |stream: tcp::tokio::TcpStream, _| {
            set_user_timeout(&stream.0, user_timeout);
            stream
        },
    );
    Ok(tcp
        .upgrade(libp2p::core::upgrade::Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

/// Sets `TCP_USER_TIMEOUT` on a connected socket. A failure only loses the faster close of a dead
/// connection, so it is logged, not fatal.
fn set_user_timeout(stream: &tokio::net::TcpStream, timeout: Duration) {
    #[cfg(target_os = "linux")]
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout)) {
        tracing::debug!(error = %e, "could not set TCP_USER_TIMEOUT");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (stream, timeout);
}

/// Builds the swarm: transports once, then the behaviour.
pub fn build_swarm(
    keypair: identity::Keypair,
    config: &Config,
) -> Result<Swarm<Behaviour>, OverlayError> {
    build_swarm_with_metrics(keypair, config, None)
}

/// [`build_swarm`], with gossipsub recording its own metrics into `registry` when there is one.
pub fn build_swarm_with_metrics(
    keypair: identity::Keypair,
    config: &Config,
    registry: Option<&mut prometheus_client::registry::Registry>,
) -> Result<Swarm<Behaviour>, OverlayError> {
    let idle = config.idle_connection_timeout;
    let user_timeout = config.tcp_user_timeout;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic()
        .with_other_transport(|key| {
            tcp_transport(key, user_timeout)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        })
        .map_err(|e| OverlayError::Transport(e.to_string()))?
        .with_dns()
        .map_err(|e| OverlayError::Transport(e.to_string()))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| OverlayError::Transport(e.to_string()))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, relay_client, config, registry)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        })
        .map_err(|e| OverlayError::Config(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
