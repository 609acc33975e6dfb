//! Every knob of the overlay, with its default written once.
//!
//! [`Config::default`] is for a node on the open internet; [`Config::loopback`] is the preset for
//! meshes on 127.0.0.1 (tests, the local demo), where AutoNAT can never confirm reachability and every
//! peer shares one IP. The two differ only where loopback forces them to.

use agora_protocols::ModelOffer;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use std::net::Ipv4Addr;
use std::time::Duration;

/// `/ip4/<ip>/tcp/<port>`.
pub fn tcp_addr(ip: Ipv4Addr, port: u16) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(ip))
        .with(Protocol::Tcp(port))
}

/// `/ip4/<ip>/udp/<port>/quic-v1`.
pub fn quic_addr(ip: Ipv4Addr, port: u16) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(ip))
        .with(Protocol::Udp(port))
        .with(Protocol::QuicV1)
}

/// When Kademlia answers other peers' queries (server mode) or only asks (client mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KadMode {
    /// Client until AutoNAT says this node is publicly reachable, then server; back to client if
    /// AutoNAT later says private. A node behind a NAT in server mode would poison routing tables
    /// with addresses nobody can dial.
    Auto,
    /// Always server: bootstrap nodes, and loopback meshes where AutoNAT cannot confirm anything.
    Server,
    /// Always client.
    Client,
}

/// When the node asks a relay for a reservation so that peers behind no NAT can reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// Reserve through a bootstrap node once AutoNAT says this node is private.
    Auto,
    /// Reserve through every bootstrap node from the start (a node known to be behind a NAT).
    Always,
    /// Never reserve.
    Never,
}

/// Limits of the relay server (bootstrap nodes only). They keep one relay from being a free
/// bulk-transfer service: a circuit is for reaching a peer and hole punching, not for streaming.
#[derive(Debug, Clone)]
pub struct RelayServerLimits {
    /// Most reservations held at once.
    pub max_reservations: usize,
    /// Most reservations per peer.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before it must be renewed.
    pub reservation_duration: Duration,
    /// Most circuits open at once.
    pub max_circuits: usize,
    /// Most circuits per peer.
    pub max_circuits_per_peer: usize,
    /// Longest a circuit lives.
    pub max_circuit_duration: Duration,
    /// Most bytes a circuit carries (each direction). Large enough for one query payload.
    pub max_circuit_bytes: u64,
}

impl Default for RelayServerLimits {
    fn default() -> Self {
        Self {
            max_reservations: 512,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(60 * 60),
            max_circuits: 64,
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(10 * 60),
            max_circuit_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Limits on the bytes of inbound request frames, for the whole process and per peer.
///
/// Counts alone do not bound memory when one frame may be 4 MiB: 256 queued requests of that size
/// are a gigabyte. So every inbound frame is charged by its length, read from its 4-byte prefix
/// before a payload byte is read or allocated (`crate::codec::QueryCodec`), and its bytes stay
/// charged until the request is answered or dropped. A frame refused here costs its sender a stream
/// and us four bytes of reading (or, for a small frame, reading it into a fixed scratch buffer so
/// that the refusal can be answered properly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundLimits {
    /// Most bytes of inbound request frames held at once by the whole process, from reading until
    /// the request is answered. Past it, new frames are refused `Busy`. 64 MiB: sixteen of the
    /// largest frames, a few times what one provider's model can consume in the time a frame
    /// waits; memory held by a flood stays a small multiple of it (a frame is decoded into a copy).
    pub budget_bytes: usize,
    /// Frames up to this size are "small": they may use the reserve below, and when refused they
    /// are read (into a fixed scratch buffer, not kept) and answered with the reason, so an honest
    /// client learns to retry. Larger refused frames are not read: their stream is dropped. 64 KiB
    /// holds every ordinary query and settlement.
    pub small_frame_bytes: usize,
    /// Part of [`InboundLimits::budget_bytes`] only small frames may use, so that a flood of large
    /// frames cannot take all of it from peers sending ordinary queries.
    pub small_reserve_bytes: usize,
    /// Bytes of inbound frames one peer may send per second, sustained (a token bucket filled at
    /// this rate). 2 MiB/s is far above an embedding client's need and lets a large generation
    /// prompt through now and then.
    pub peer_bytes_per_sec: u64,
    /// Size of a peer's byte bucket: what it may send in a burst. It must hold the largest frame
    /// ([`agora_protocols::query::MAX_WIRE_REQUEST_LEN`]) or no frame that large ever passes; two
    /// of them.
    pub peer_burst_bytes: u64,
    /// Most inbound requests one peer may have open at once, over all its connections (read and
    /// not yet answered). Past it: `RateLimited`. 64: a busy client (a gateway) keeps a few dozen
    /// queries in flight to one provider, and its texts share the provider's batches; one peer
    /// could otherwise hold 4 connections × 256 streams. libp2p's own cap (256 streams a
    /// connection, outbound ones included) stays as a backstop.
    pub max_streams_per_peer: usize,
    /// Most peers whose byte buckets are remembered; past it, the one idle longest is forgotten.
    pub max_tracked_peers: usize,
    /// Queries larger than a small frame are checked (decoded, signature verified over the whole
    /// input) on the blocking pool, at most this many at once, instead of on the event loop that
    /// every peer's traffic goes through. One per CPU.
    pub check_threads: usize,
}

impl Default for InboundLimits {
    fn default() -> Self {
        let largest = agora_protocols::query::MAX_WIRE_REQUEST_LEN as u64;
        Self {
            budget_bytes: 64 * 1024 * 1024,
            small_frame_bytes: 64 * 1024,
            small_reserve_bytes: 8 * 1024 * 1024,
            peer_bytes_per_sec: 2 * 1024 * 1024,
            peer_burst_bytes: 2 * largest,
            max_streams_per_peer: 64,
            max_tracked_peers: 4096,
            check_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// One model offered on one subnet, as advertised and as matched against open calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetOffer {
    /// The subnet.
    pub subnet: u16,
    /// What is offered there.
    pub offer: ModelOffer,
}

/// The overlay's configuration. Build one with [`Config::default`] or [`Config::loopback`] and
/// change fields; nothing else holds a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on (TCP and/or QUIC multiaddrs). Empty: listen nowhere (a node that only
    /// dials out, reachable through a relay if [`Config::relay`] allows).
    pub listen: Vec<Multiaddr>,
    /// Bootstrap nodes, each with its `/p2p/<peer id>` suffix.
    pub bootstrap: Vec<Multiaddr>,
    /// Kademlia server/client policy.
    pub kad_mode: KadMode,
    /// Treat our own listen addresses as external addresses. Only for loopback meshes: a provider
    /// record carries the provider's external addresses, and with none it is useless.
    pub listen_addrs_are_external: bool,
    /// AutoNAT: only trust probes between global IP addresses (false on loopback).
    pub autonat_only_global_ips: bool,
    /// Run a relay server (bootstrap nodes).
    pub relay_server: Option<RelayServerLimits>,
    /// Relay client policy.
    pub relay: RelayMode,
    /// Try DCUtR hole punching over relayed connections.
    pub dcutr: bool,
    /// Subnets whose topics this node joins.
    pub subnets: Vec<u16>,
    /// Models this node serves; non-empty makes it publish adverts and provider records.
    pub offers: Vec<SubnetOffer>,
    /// How often an advert is gossiped.
    pub advert_interval: Duration,
    /// How long an advert stays valid after it is made (a few intervals, so one lost message does
    /// not drop the provider from tables).
    pub advert_ttl: Duration,
    /// Most providers held in the table; the oldest advert goes first when it is full.
    pub max_providers: usize,
    /// How often a random Kademlia walk looks for new peers.
    pub discovery_interval: Duration,
    /// Backstop deadline of one request-response exchange. Each query carries its own deadline,
    /// which the client enforces and the provider honours; this only reclaims streams whose peer
    /// hangs, so it must be longer than any query's deadline (a long generation on a CPU takes
    /// minutes), or long queries fail here first.
    pub request_timeout: Duration,
    /// How long a client of an open call collects offers before it awards one.
    pub offer_window: Duration,
    /// Most offers kept for one open call.
    pub max_offers_per_call: usize,
    /// Most outstanding requests, DHT lookups and open calls each (commands beyond get an error).
    pub max_pending: usize,
    /// Capacity of the command channel from [`crate::Client`] handles to the event loop.
    pub command_buffer: usize,
    /// Capacity of the event channel to the application; inbound queries beyond it get `Busy`.
    pub event_buffer: usize,
    /// Connections left open this long with nothing on them are closed.
    pub idle_connection_timeout: Duration,
    /// How long data we sent on a TCP connection may go unacknowledged before the kernel drops
    /// the connection (`TCP_USER_TIMEOUT`, Linux). Without it a connection cut by a partition
    /// lingers half-open for the kernel's retransmission limit (about 15 minutes): missed pings
    /// start a graceful close, but that close flushes first, and a flush into a full send buffer
    /// never ends. QUIC has its own idle timeout.
    pub tcp_user_timeout: Duration,
    /// Most established connections in total.
    pub max_established: u32,
    /// Most established connections to one peer.
    pub max_established_per_peer: u32,
    /// Most connections being set up at once, each direction.
    pub max_pending_connections: u32,
    /// What inbound `/agora/query/1` frames may cost in bytes, checked from each frame's length
    /// prefix before its payload is read (see [`InboundLimits`]).
    pub inbound: InboundLimits,
    /// Whether gossipsub exempts 127.0.0.1/::1 from its IP colocation penalty (loopback meshes put
    /// every peer on one IP, and the penalty would push the mesh's own peers out).
    pub exempt_loopback_from_colocation: bool,
    /// Largest gossip message accepted.
    pub max_gossip_len: usize,
    /// Sent in identify, to tell operators what software a peer runs.
    pub agent_version: String,
    /// Expiring bans of peers that keep sending what no honest peer sends.
    pub bans: BanConfig,
}

/// Expiring bans: a peer that sends [`BanConfig::strikes`] forged or malformed messages (gossip
/// that fails validation, queries or settlements with a bad signature or undecodable input) is
/// disconnected and refused for [`BanConfig::first`], then for twice as long at each new ban, up
/// to [`BanConfig::max`]. Busy, rate-limited or expired requests are no strike: honest peers
/// send those under load or with a drifting clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanConfig {
    /// Strikes that earn a ban (0: never ban).
    pub strikes: u32,
    /// The first ban's length.
    pub first: Duration,
    /// The longest ban.
    pub max: Duration,
    /// Peers whose strikes and ban history are remembered; past it the oldest are forgotten.
    pub max_tracked: usize,
}

impl Default for BanConfig {
    fn default() -> Self {
        Self {
            strikes: 20,
            first: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            max_tracked: 4096,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![
                tcp_addr(Ipv4Addr::UNSPECIFIED, 4001),
                quic_addr(Ipv4Addr::UNSPECIFIED, 4001),
            ],
            bootstrap: Vec::new(),
            kad_mode: KadMode::Auto,
            listen_addrs_are_external: false,
            autonat_only_global_ips: true,
            relay_server: None,
            relay: RelayMode::Auto,
            dcutr: true,
            subnets: vec![1],
            offers: Vec::new(),
            advert_interval: Duration::from_secs(5),
            advert_ttl: Duration::from_secs(30),
            max_providers: 4096,
            discovery_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(600),
            offer_window: Duration::from_millis(1500),
            max_offers_per_call: 16,
            max_pending: 1024,
            command_buffer: 256,
            event_buffer: 256,
            idle_connection_timeout: Duration::from_secs(120),
            tcp_user_timeout: Duration::from_secs(30),
            max_established: 512,
            max_established_per_peer: 4,
            max_pending_connections: 128,
            inbound: InboundLimits::default(),
            exempt_loopback_from_colocation: true,
            max_gossip_len: 64 * 1024,
            agent_version: format!("agora/{}", env!("CARGO_PKG_VERSION")),
            bans: BanConfig::default(),
        }
    }
}

impl Config {
    /// The preset for meshes on 127.0.0.1: listen on an ephemeral TCP port, Kademlia server (AutoNAT
    /// refuses to confirm loopback addresses), listen addresses used as external ones, quicker
    /// adverts and discovery so tests converge in seconds.
    pub fn loopback() -> Self {
        Self {
            listen: vec![tcp_addr(Ipv4Addr::LOCALHOST, 0)],
            kad_mode: KadMode::Server,
            listen_addrs_are_external: true,
            autonat_only_global_ips: false,
            relay: RelayMode::Never,
            advert_interval: Duration::from_secs(2),
            advert_ttl: Duration::from_secs(20),
            discovery_interval: Duration::from_secs(5),
            ..Self::default()
        }
    }

    /// Every subnet the node joins: the configured ones plus those it serves.
    pub fn all_subnets(&self) -> Vec<u16> {
        let mut subnets = self.subnets.clone();
        subnets.extend(self.offers.iter().map(|o| o.subnet));
        subnets.sort_unstable();
        subnets.dedup();
        subnets
    }
}
