//! The event loop: the one owner of the swarm.
//!
//! It `select!`s between swarm events, commands from [`crate::Client`] handles and a few timers
//! (adverts, discovery, expiry, closing open calls). Every answer owed to a caller waits in a map
//! keyed by the libp2p id of the operation, and every map is bounded by `Config::max_pending`.

use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::client::{Command, Event, NodeStatus, PeerRow, QueryReply};
use crate::codec::QueryFrame;
use crate::config::{Config, KadMode, RelayMode, SubnetOffer};
use crate::error::OverlayError;
use crate::metrics::OverlayMetrics;
use crate::providers::{
    AdvertVerdict, ProviderTable, advert_topic, announce_topic, check_advert, provider_key,
};
use crate::query::{
    Answer, check_answer, check_inbound_query, check_inbound_settle, error_response, now_ms,
    peer_id_of,
};
use agora_protocols::{
    CapabilityAdvert, ContentId, Offer, QueryAnnouncement, QueryErrorKind, QueryRequest,
    QueryWireRequest, QueryWireResponse, Reachability, SecretKey, Signed, advert::MAX_ADVERT_ADDRS,
};
use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::kad::{self, QueryId};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, gossipsub, identify, ping, relay};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most addresses remembered per peer from identify.
const MAX_ADDRS_PER_PEER: usize = 8;
/// How often the gauges that are sampled rather than counted (routing table, mesh sizes, provider
/// table, queue depth) are refreshed.
const METRICS_INTERVAL: Duration = Duration::from_secs(2);
/// How long an offer we make stays valid.
const OFFER_VALIDITY: Duration = Duration::from_secs(10);

/// What a gossip topic carries.
#[derive(Debug, Clone, Copy)]
enum TopicKind {
    Adverts(u16),
    Announcements(u16),
}

/// An outbound request waiting for its response.
#[derive(Debug)]
enum Pending {
    /// A query we sent; the caller waits for the checked answer.
    Query {
        request: Box<Signed<QueryRequest>>,
        tx: QueryTx,
    },
    /// An offer we made on someone's open call.
    Offer,
    /// A countersigned receipt we sent to its provider.
    Settle {
        tx: oneshot::Sender<Result<bool, OverlayError>>,
    },
}

/// Where a query's answer goes: a direct caller, or an open call (which reports the winner too).
#[derive(Debug)]
enum QueryTx {
    Direct(oneshot::Sender<Result<Answer, OverlayError>>),
    Open(oneshot::Sender<Result<(PeerId, Answer), OverlayError>>),
}

impl QueryTx {
    fn send(self, peer: PeerId, result: Result<Answer, OverlayError>) {
        match self {
            QueryTx::Direct(tx) => {
                let _ = tx.send(result);
            }
            QueryTx::Open(tx) => {
                let _ = tx.send(result.map(|a| (peer, a)));
            }
        }
    }
}

/// A provider lookup in progress: what has been found so far, and who is waiting for it.
type PendingLookup = (
    HashSet<PeerId>,
    oneshot::Sender<Result<Vec<PeerId>, OverlayError>>,
);

/// An open call of ours, collecting offers until its window closes.
#[derive(Debug)]
struct OpenCall {
    closes_at: Instant,
    max_price: u64,
    request: Box<Signed<QueryRequest>>,
    offers: Vec<(PeerId, Offer, ResponseChannel<QueryWireResponse>)>,
    tx: oneshot::Sender<Result<(PeerId, Answer), OverlayError>>,
}

#[derive(Debug, Default)]
struct PeerInfo {
    agent: Option<String>,
    addrs: Vec<Multiaddr>,
    rtt: Option<Duration>,
}

/// Owns the swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    key: SecretKey,
    config: Config,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    metrics: Option<libp2p::metrics::Metrics>,
    overlay_metrics: Option<OverlayMetrics>,
    topics: HashMap<gossipsub::TopicHash, TopicKind>,
    providers: ProviderTable,
    offers: Vec<SubnetOffer>,
    pending_requests: HashMap<OutboundRequestId, Pending>,
    pending_dht: HashMap<QueryId, PendingLookup>,
    open_calls: HashMap<ContentId, OpenCall>,
    peer_info: HashMap<PeerId, PeerInfo>,
    nat: autonat::NatStatus,
    relays: HashSet<PeerId>,
    /// The listener asking a relay for a reservation, while one is asked for or held.
    relay_listener: Option<ListenerId>,
    /// When a refused or lost reservation may be asked for again, and the pause after that.
    relay_retry: (Option<Instant>, Duration),
    /// Failed pings in a row, per connection.
    ping_failures: HashMap<ConnectionId, u32>,
    /// Strikes per peer since its last ban: forged or malformed messages.
    strikes: HashMap<PeerId, u32>,
    /// Ban history per peer: until when it is banned (None: not now), and the next ban's length.
    bans: HashMap<PeerId, (Option<Instant>, Duration)>,
    /// Consensus reputation per peer, 0 to 1: its gossipsub application score.
    reputation: HashMap<PeerId, f64>,
    provided_at_table_size: Option<usize>,
    /// Large inbound queries checked off the event loop come back here (see
    /// [`EventLoop::check_off_the_loop`]).
    checked_tx: mpsc::Sender<Checked>,
    checked_rx: mpsc::Receiver<Checked>,
    /// Large inbound queries being checked at once.
    checking: Arc<Semaphore>,
}

/// A large inbound query, checked on the blocking pool.
#[derive(Debug)]
struct Checked {
    peer: PeerId,
    result: Result<Signed<QueryRequest>, agora_protocols::QueryError>,
    reply: QueryReply,
}

/// Checked queries waiting for the event loop.
const CHECKED_BUFFER: usize = 64;

/// Failed pings in a row after which a connection counts as dead and is closed (pings run every
/// 15 s with a 20 s timeout, so a dead connection goes within about a minute).
const PING_FAILURES_TO_CLOSE: u32 = 3;

/// First pause before asking a relay again after a refused or lost reservation (a relay that
/// does not know its own public address yet refuses reservations until AutoNAT confirms one).
const RELAY_RETRY_FIRST: Duration = Duration::from_secs(5);
/// Longest pause between two reservation attempts.
const RELAY_RETRY_MAX: Duration = Duration::from_secs(300);

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer_id", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

fn strip_p2p(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut addr = addr.clone();
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => {
            addr.pop();
            (addr, Some(peer))
        }
        _ => (addr, None),
    }
}

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        key: SecretKey,
        config: Config,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        metrics: Option<libp2p::metrics::Metrics>,
        overlay_metrics: Option<OverlayMetrics>,
    ) -> Self {
        let (checked_tx, checked_rx) = mpsc::channel(CHECKED_BUFFER);
        let config_checks = config.inbound.check_threads.max(1);
        Self {
            providers: ProviderTable::new(config.max_providers),
            offers: config.offers.clone(),
            swarm,
            key,
            config,
            commands,
            events,
            metrics,
            overlay_metrics,
            topics: HashMap::new(),
            pending_requests: HashMap::new(),
            pending_dht: HashMap::new(),
            open_calls: HashMap::new(),
            peer_info: HashMap::new(),
            nat: autonat::NatStatus::Unknown,
            relays: HashSet::new(),
            relay_listener: None,
            relay_retry: (None, RELAY_RETRY_FIRST),
            ping_failures: HashMap::new(),
            strikes: HashMap::new(),
            bans: HashMap::new(),
            reputation: HashMap::new(),
            provided_at_table_size: None,
            checked_tx,
            checked_rx,
            checking: Arc::new(Semaphore::new(config_checks)),
        }
    }

    /// Listens, joins topics and dials the bootstrap nodes. Errors here are the caller's to report
    /// (a port in use, a malformed address); later network trouble is logged and survived.
    pub(crate) fn start(&mut self) -> Result<(), OverlayError> {
        for addr in self.config.listen.clone() {
            self.swarm
                .listen_on(addr.clone())
                .map_err(|e| OverlayError::Transport(format!("listen on {addr}: {e}")))?;
        }
        for subnet in self.config.all_subnets() {
            for (name, kind) in [
                (advert_topic(subnet), TopicKind::Adverts(subnet)),
                (announce_topic(subnet), TopicKind::Announcements(subnet)),
            ] {
                let topic = gossipsub::IdentTopic::new(name);
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&topic)
                    .map_err(|e| OverlayError::Config(format!("subscribe: {e}")))?;
                self.topics.insert(topic.hash(), kind);
            }
        }
        for addr in self.config.bootstrap.clone() {
            let (plain, peer) = strip_p2p(&addr);
            match peer {
                Some(peer) => {
                    self.swarm.behaviour_mut().kad.add_address(&peer, plain);
                }
                None => {
                    tracing::warn!(%addr, "bootstrap address without /p2p/<peer id>: dialing anyway")
                }
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap node");
            }
        }
        // RelayMode::Always reserves once a bootstrap connection is up (see ConnectionEstablished):
        // asking now would race our own dial, and the relay client drops a listener whose dial
        // loses that race.
        Ok(())
    }

    fn listen_via_relay(&mut self, relay_addr: &Multiaddr) {
        let circuit = relay_addr.clone().with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                tracing::info!(%circuit, "asking for a relay reservation");
                self.relay_listener = Some(id);
            }
            Err(e) => {
                tracing::warn!(%circuit, error = %e, "cannot listen via relay");
                self.relay_failed();
            }
        }
    }

    /// Whether this node should hold a relay reservation now: always with `RelayMode::Always`,
    /// with `Auto` once AutoNAT says it is private.
    fn wants_relay(&self) -> bool {
        match self.config.relay {
            RelayMode::Always => true,
            RelayMode::Auto => matches!(self.nat, autonat::NatStatus::Private),
            RelayMode::Never => false,
        }
    }

    /// The reservation was refused or lost: ask again after a pause that doubles each time.
    fn relay_failed(&mut self) {
        self.relay_listener = None;
        let (_, pause) = self.relay_retry;
        self.relay_retry = (
            Some(Instant::now() + pause),
            (pause * 2).min(RELAY_RETRY_MAX),
        );
    }

    /// Asks for a reservation if one is wanted, none is asked for or held, and any pause after a
    /// failure is over (called when something changed, and on the discovery tick).
    fn maybe_request_relay(&mut self) {
        let paused = self.relay_retry.0.is_some_and(|at| Instant::now() < at);
        if self.wants_relay() && self.relay_listener.is_none() && !paused {
            self.request_relay();
        }
    }

    /// Runs until every [`crate::Client`] handle is dropped.
    pub async fn run(mut self) {
        let mut advert_tick = tokio::time::interval(self.config.advert_interval);
        let mut discovery_tick = tokio::time::interval(self.config.discovery_interval);
        let mut call_tick = tokio::time::interval(Duration::from_millis(200));
        let mut metrics_tick = tokio::time::interval(METRICS_INTERVAL);
        for tick in [
            &mut advert_tick,
            &mut discovery_tick,
            &mut call_tick,
            &mut metrics_tick,
        ] {
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(checked) = self.checked_rx.recv() => self.on_checked(checked),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                _ = advert_tick.tick() => self.publish_adverts(),
                _ = discovery_tick.tick() => self.discover(),
                _ = call_tick.tick() => self.close_open_calls(),
                _ = metrics_tick.tick() => {
                    self.lift_expired_bans();
                    self.refresh_metrics();
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, tx } => {
                let result = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| OverlayError::Dial(format!("{addr}: {e}")));
                let _ = tx.send(result);
            }
            Command::AddAddress { peer, addr } => {
                self.swarm.add_peer_address(peer, addr);
            }
            Command::Status { tx } => {
                let _ = tx.send(self.status());
            }
            Command::Peers { tx } => {
                let _ = tx.send(self.peer_rows());
            }
            Command::Providers { task, model, tx } => {
                let now = now_ms();
                self.providers.expire(now);
                let _ = tx.send(self.providers.rows(task, model.as_deref(), now));
            }
            Command::DhtProviders {
                subnet,
                task,
                model,
                tx,
            } => {
                if self.pending_dht.len() >= self.config.max_pending {
                    let _ = tx.send(Err(OverlayError::Overloaded("DHT lookups")));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(provider_key(subnet, task, &model));
                self.pending_dht.insert(id, (HashSet::new(), tx));
            }
            Command::SetReputation { scores } => {
                let limit = self.config.bans.max_tracked;
                self.reputation = scores
                    .into_iter()
                    .filter(|(_, score)| score.is_finite())
                    .map(|(peer, score)| (peer, score.clamp(0.0, 1.0)))
                    .take(limit)
                    .collect();
                let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                for peer in connected {
                    let score = self.reputation.get(&peer).copied().unwrap_or(0.0);
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .set_application_score(&peer, score);
                }
            }
            Command::SetOffers { offers } => {
                self.offers = offers;
                self.provided_at_table_size = None;
                self.provide();
                self.publish_adverts();
            }
            Command::Query { peer, request, tx } => {
                self.send_query(peer, request, QueryTx::Direct(tx));
            }
            Command::OpenQuery {
                announcement,
                request,
                tx,
            } => self.start_open_call(*announcement, request, tx),
            Command::Settle { peer, receipt, tx } => {
                if self.pending_requests.len() >= self.config.max_pending {
                    let _ = tx.send(Err(OverlayError::Overloaded("requests")));
                    return;
                }
                match receipt.to_bytes() {
                    Ok(bytes) => {
                        let id = self
                            .swarm
                            .behaviour_mut()
                            .query
                            .send_request(&peer, QueryWireRequest::Settle(bytes).into());
                        self.pending_requests.insert(id, Pending::Settle { tx });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(OverlayError::Encode(e.to_string())));
                    }
                }
            }
            Command::Respond { reply, response } => {
                let QueryReply { channel, permit } = reply;
                if self
                    .swarm
                    .behaviour_mut()
                    .query
                    .send_response(channel, *response)
                    .is_err()
                {
                    tracing::debug!("the client went away before the answer was sent");
                }
                // Answered: the request's bytes no longer count against the inbound limits.
                drop(permit);
            }
        }
    }

    fn send_query(&mut self, peer: PeerId, request: Box<Signed<QueryRequest>>, tx: QueryTx) {
        if self.pending_requests.len() >= self.config.max_pending {
            tx.send(peer, Err(OverlayError::Overloaded("requests")));
            return;
        }
        let bytes = match request.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                tx.send(peer, Err(OverlayError::Encode(e.to_string())));
                return;
            }
        };
        let id = self
            .swarm
            .behaviour_mut()
            .query
            .send_request(&peer, QueryWireRequest::Query(bytes).into());
        self.pending_requests
            .insert(id, Pending::Query { request, tx });
    }

    fn start_open_call(
        &mut self,
        announcement: Signed<QueryAnnouncement>,
        request: Box<Signed<QueryRequest>>,
        tx: oneshot::Sender<Result<(PeerId, Answer), OverlayError>>,
    ) {
        let a = announcement.value();
        if self.open_calls.len() >= self.config.max_pending {
            let _ = tx.send(Err(OverlayError::Overloaded("open calls")));
            return;
        }
        if a.query_id != request.value().query_id
            || a.input_hash != ContentId::of_payload(&request.value().input)
        {
            let _ = tx.send(Err(OverlayError::Encode(
                "the announcement does not describe the request".to_string(),
            )));
            return;
        }
        let bytes = match announcement.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = tx.send(Err(OverlayError::Encode(e.to_string())));
                return;
            }
        };
        let topic = gossipsub::IdentTopic::new(announce_topic(a.subnet));
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            let _ = tx.send(Err(OverlayError::NoOffers(format!(
                "{}: cannot announce: {e}",
                a.query_id.short()
            ))));
            return;
        }
        self.open_calls.insert(
            a.query_id,
            OpenCall {
                closes_at: Instant::now() + self.config.offer_window,
                max_price: a.max_price,
                request,
                offers: Vec::new(),
                tx,
            },
        );
    }

    /// Awards every open call whose window has closed: the cheapest offer, then the shortest queue.
    fn close_open_calls(&mut self) {
        let now = Instant::now();
        let closed: Vec<ContentId> = self
            .open_calls
            .iter()
            .filter(|(_, call)| call.closes_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in closed {
            let Some(mut call) = self.open_calls.remove(&id) else {
                continue;
            };
            call.offers.sort_by(|a, b| {
                a.1.price
                    .cmp(&b.1.price)
                    .then(a.1.queue_depth.cmp(&b.1.queue_depth))
            });
            let mut winner = None;
            for (i, (peer, _, channel)) in call.offers.into_iter().enumerate() {
                let awarded = i == 0;
                if awarded {
                    winner = Some(peer);
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .query
                    .send_response(channel, QueryWireResponse::OfferNoted { awarded });
            }
            match winner {
                Some(peer) => self.send_query(peer, call.request, QueryTx::Open(call.tx)),
                None => {
                    let _ = call.tx.send(Err(OverlayError::NoOffers(id.short())));
                }
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(metrics) = &self.metrics {
            libp2p::metrics::Recorder::record(metrics, &event);
        }
        if let Some(m) = &mut self.overlay_metrics {
            match &event {
                SwarmEvent::ConnectionEstablished {
                    peer_id,
                    connection_id,
                    endpoint,
                    ..
                } => m.connection_opened(*connection_id, *peer_id, endpoint),
                SwarmEvent::ConnectionClosed { connection_id, .. } => {
                    m.connection_closed(*connection_id);
                }
                _ => {}
            }
        }
        if let SwarmEvent::ConnectionClosed { connection_id, .. } = &event {
            self.ping_failures.remove(connection_id);
        }
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if is_relayed(&address) {
                    // A reservation: this is how peers reach us now; say so in identify and adverts.
                    self.swarm.add_external_address(address);
                } else if self.config.listen_addrs_are_external {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.swarm.remove_external_address(&address);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.peer_info.entry(peer_id).or_default();
                if let Some(score) = self.reputation.get(&peer_id).copied() {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .set_application_score(&peer_id, score);
                }
                if self.config.relay == RelayMode::Always && self.is_bootstrap(&peer_id) {
                    self.maybe_request_relay();
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } if self.relay_listener == Some(listener_id) => {
                match reason {
                    Ok(()) => tracing::info!("relay reservation ended; asking again later"),
                    Err(e) => {
                        tracing::info!(error = %e, "relay reservation refused or lost; asking again later")
                    }
                }
                self.relay_failed();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.peer_info.remove(&peer_id);
                if self.relays.remove(&peer_id) {
                    tracing::info!(relay = %peer_id, "lost the relay");
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(event) => {
                if let Some(m) = &self.metrics {
                    libp2p::metrics::Recorder::record(m, &event);
                }
                self.on_identify(event);
            }
            BehaviourEvent::Ping(event) => {
                if let Some(m) = &self.metrics {
                    libp2p::metrics::Recorder::record(m, &event);
                }
                self.on_ping(event);
            }
            BehaviourEvent::Kad(event) => {
                if let Some(m) = &self.metrics {
                    libp2p::metrics::Recorder::record(m, &event);
                }
                self.on_kad(event);
            }
            BehaviourEvent::Gossipsub(event) => {
                if let Some(m) = &self.metrics {
                    libp2p::metrics::Recorder::record(m, &event);
                }
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = event
                {
                    let acceptance = self.on_gossip(&message);
                    self.count_gossip(&message.topic, &acceptance);
                    if matches!(acceptance, gossipsub::MessageAcceptance::Reject) {
                        self.strike(propagation_source, "gossip that failed validation");
                    }
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
                }
            }
            BehaviourEvent::Query(event) => self.on_query_event(event),
            BehaviourEvent::Autonat(event) => self.on_autonat(event),
            BehaviourEvent::RelayServer(event) => {
                if let Some(m) = &self.metrics {
                    libp2p::metrics::Recorder::record(m, &event);
                }
                tracing::debug!(?event, "relay server");
            }
            BehaviourEvent::RelayClient(event) => {
                if let relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } = event {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                    self.relays.insert(relay_peer_id);
                    self.relay_retry = (None, RELAY_RETRY_FIRST);
                }
            }
            BehaviourEvent::Dcutr(event) => {
                if let Some(m) = &self.metrics {
                    libp2p::metrics::Recorder::record(m, &event);
                }
                match &event.result {
                    Ok(_) => {
                        tracing::info!(peer = %event.remote_peer_id, "hole punch succeeded: direct connection")
                    }
                    Err(e) => {
                        tracing::info!(peer = %event.remote_peer_id, error = %e, "hole punch failed; staying relayed")
                    }
                }
            }
            BehaviourEvent::Limits(never) | BehaviourEvent::Banned(never) => match never {},
        }
    }

    /// Keeps each peer's round trip, and closes a connection whose pings failed
    /// [`PING_FAILURES_TO_CLOSE`] times in a row. One failed ping is not a dead peer (concurrent
    /// pings from one remote can fail), but after a network partition a TCP connection stays
    /// half-open until the kernel gives up (minutes, or never without keep-alive probes): the peer
    /// looks connected, nothing dials it again, and requests to it wait for their deadline.
    fn on_ping(&mut self, event: ping::Event) {
        match event.result {
            Ok(rtt) => {
                self.ping_failures.remove(&event.connection);
                if let Some(info) = self.peer_info.get_mut(&event.peer) {
                    info.rtt = Some(rtt);
                }
            }
            Err(e) => {
                let failures = self.ping_failures.entry(event.connection).or_insert(0);
                *failures += 1;
                if *failures >= PING_FAILURES_TO_CLOSE {
                    tracing::info!(peer = %event.peer, error = %e, "pings failed {PING_FAILURES_TO_CLOSE} times in a row: closing the connection");
                    self.ping_failures.remove(&event.connection);
                    self.swarm.close_connection(event.connection);
                }
            }
        }
    }

    /// Counts a forged or malformed message from `peer`; enough of them earn an expiring ban.
    fn strike(&mut self, peer: PeerId, what: &str) {
        let bans = &self.config.bans;
        if bans.strikes == 0 {
            return;
        }
        if !self.strikes.contains_key(&peer) && self.strikes.len() >= bans.max_tracked {
            // Bounded: forget someone's strikes (a sybil flood cannot grow this map).
            if let Some(old) = self.strikes.keys().next().copied() {
                self.strikes.remove(&old);
            }
        }
        let count = self.strikes.entry(peer).or_insert(0);
        *count += 1;
        if *count >= bans.strikes {
            self.strikes.remove(&peer);
            self.ban(peer, what);
        }
    }

    /// A strike for a refusal that only a forged or malformed message earns.
    fn strike_if_forged(&mut self, peer: PeerId, kind: QueryErrorKind) {
        if matches!(
            kind,
            QueryErrorKind::BadSignature | QueryErrorKind::BadInput
        ) {
            self.strike(peer, "forged or malformed requests");
        }
    }

    /// Disconnects `peer` and refuses it until the ban expires; each new ban lasts twice the last.
    fn ban(&mut self, peer: PeerId, why: &str) {
        let (first, max) = (self.config.bans.first, self.config.bans.max);
        if !self.bans.contains_key(&peer) && self.bans.len() >= self.config.bans.max_tracked {
            let forgettable = self.bans.iter().find(|(_, (until, _))| until.is_none());
            if let Some(old) = forgettable.map(|(p, _)| *p) {
                self.bans.remove(&old);
            }
        }
        let length = self.bans.get(&peer).map_or(first, |(_, next)| *next);
        self.bans
            .insert(peer, (Some(Instant::now() + length), (length * 2).min(max)));
        self.swarm.behaviour_mut().banned.block_peer(peer);
        tracing::warn!(%peer, why, seconds = length.as_secs(), "banned");
    }

    /// Lets in again the peers whose ban is over (their history stays, so the next ban is longer).
    fn lift_expired_bans(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, (until, _))| until.is_some_and(|u| u <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            if let Some(ban) = self.bans.get_mut(&peer) {
                ban.0 = None;
            }
            self.swarm.behaviour_mut().banned.unblock_peer(peer);
            tracing::info!(%peer, "ban lifted");
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        let addrs: Vec<Multiaddr> = info
            .listen_addrs
            .iter()
            .take(MAX_ADDRS_PER_PEER)
            .cloned()
            .collect();
        // Kademlia does not learn addresses from inbound connections: feed it what the peer says
        // it listens on, but only for peers that serve the DHT.
        if info.protocols.contains(&KAD_PROTOCOL) {
            for addr in &addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, addr.clone());
            }
        }
        if let Some(entry) = self.peer_info.get_mut(&peer_id) {
            entry.agent = Some(info.agent_version.chars().take(128).collect());
            entry.addrs = addrs;
        }
        // A private node reserves through a relay as soon as it knows one that supports the hop
        // protocol.
        if self.config.relay == RelayMode::Auto && self.is_bootstrap(&peer_id) {
            self.maybe_request_relay();
        }
    }

    fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.config
            .bootstrap
            .iter()
            .any(|a| strip_p2p(a).1.as_ref() == Some(peer))
    }

    fn request_relay(&mut self) {
        let connected: Vec<Multiaddr> = self
            .config
            .bootstrap
            .iter()
            .filter(|a| strip_p2p(a).1.is_some_and(|p| self.swarm.is_connected(&p)))
            .cloned()
            .collect();
        if let Some(addr) = connected.first() {
            self.listen_via_relay(addr);
        }
    }

    fn on_autonat(&mut self, event: autonat::Event) {
        let autonat::Event::StatusChanged { old, new } = event else {
            return;
        };
        tracing::info!(?old, ?new, "NAT status changed");
        self.nat = new.clone();
        if self.config.kad_mode == KadMode::Auto {
            let mode = match new {
                autonat::NatStatus::Public(_) => kad::Mode::Server,
                _ => kad::Mode::Client,
            };
            self.swarm.behaviour_mut().kad.set_mode(Some(mode));
        }
        if self.config.relay == RelayMode::Auto {
            self.maybe_request_relay();
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        if let (Some(m), kad::Event::OutboundQueryProgressed { result, step, .. }) =
            (&self.overlay_metrics, &event)
            && step.last
        {
            let (kind, ok) = lookup_outcome(result);
            m.lookup_finished(kind, ok);
        }
        match event {
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                    providers,
                    ..
                })) => {
                    if let Some((found, _)) = self.pending_dht.get_mut(&id) {
                        found.extend(providers);
                    }
                    if step.last {
                        self.finish_dht(id, Ok(()));
                    }
                }
                kad::QueryResult::GetProviders(Ok(
                    kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. },
                )) => self.finish_dht(id, Ok(())),
                kad::QueryResult::GetProviders(Err(e)) => self.finish_dht(id, Err(e.to_string())),
                kad::QueryResult::StartProviding(Err(e)) => {
                    tracing::debug!(error = %e, "provider record not stored everywhere");
                }
                kad::QueryResult::Bootstrap(Err(e)) => {
                    tracing::debug!(error = %e, "DHT bootstrap step failed");
                }
                _ => {}
            },
            kad::Event::RoutingUpdated { peer, .. } => {
                tracing::debug!(%peer, "routing table updated");
                if self.overlay_metrics.is_some() {
                    let size = self.routing_table_size();
                    if let Some(m) = &self.overlay_metrics {
                        m.set_routing_table(size);
                    }
                }
            }
            kad::Event::UnroutablePeer { peer } => {
                tracing::debug!(%peer, "unroutable peer");
            }
            _ => {}
        }
    }

    fn finish_dht(&mut self, id: QueryId, result: Result<(), String>) {
        let Some((found, tx)) = self.pending_dht.remove(&id) else {
            return;
        };
        let result = match result {
            // A lookup that found some providers before failing still answers.
            Err(e) if found.is_empty() => Err(OverlayError::Dht(e)),
            _ => Ok(found.into_iter().collect()),
        };
        let _ = tx.send(result);
    }

    /// Checks a gossip message before it is forwarded: decode, signature, author = gossip source,
    /// subnet = topic's subnet, bounds, freshness. Invalid messages are rejected (the sender's score
    /// drops); stale ones are only ignored.
    fn on_gossip(&mut self, message: &gossipsub::Message) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let Some(kind) = self.topics.get(&message.topic).copied() else {
            return Ignore;
        };
        let Some(source) = message.source else {
            return Reject;
        };
        let now = now_ms();
        match kind {
            TopicKind::Adverts(subnet) => {
                let advert = match check_advert(&source, subnet, &message.data, now) {
                    Ok(advert) => advert,
                    Err(AdvertVerdict::Invalid) => return Reject,
                    Err(AdvertVerdict::Stale) => return Ignore,
                };
                if source != *self.swarm.local_peer_id() {
                    for addr in advert.value().addrs.iter().take(MAX_ADVERT_ADDRS) {
                        if let Ok(addr) = addr.parse::<Multiaddr>() {
                            let (plain, _) = strip_p2p(&addr);
                            self.swarm.add_peer_address(source, plain);
                        }
                    }
                    self.providers.insert(source, advert, now);
                }
                Accept
            }
            TopicKind::Announcements(subnet) => {
                let Ok(announcement) = Signed::<QueryAnnouncement>::from_bytes(&message.data)
                else {
                    return Reject;
                };
                let a = announcement.value();
                if peer_id_of(&announcement.signer()).ok() != Some(source) || a.subnet != subnet {
                    return Reject;
                }
                if a.deadline_ms < now {
                    return Ignore;
                }
                self.maybe_offer(source, a);
                Accept
            }
        }
    }

    /// Open mode, provider side: offer on an announcement for a model we serve within its budget.
    fn maybe_offer(&mut self, client: PeerId, a: &QueryAnnouncement) {
        if client == *self.swarm.local_peer_id()
            || self.pending_requests.len() >= self.config.max_pending
        {
            return;
        }
        let Some(offer) = self.offers.iter().find(|o| {
            o.subnet == a.subnet
                && o.offer.task == a.task
                && o.offer.model == a.model
                && o.offer.price <= a.max_price
        }) else {
            return;
        };
        let offer = Offer {
            query_id: a.query_id,
            price: offer.offer.price,
            queue_depth: offer.offer.queue_depth,
            valid_until_ms: now_ms()
                .saturating_add(u64::try_from(OFFER_VALIDITY.as_millis()).unwrap_or(u64::MAX)),
        };
        let Ok(bytes) = Signed::sign(offer, &self.key).and_then(|s| s.to_bytes()) else {
            return;
        };
        let id = self
            .swarm
            .behaviour_mut()
            .query
            .send_request(&client, QueryWireRequest::Offer(bytes).into());
        self.pending_requests.insert(id, Pending::Offer);
    }

    fn on_query_event(&mut self, event: request_response::Event<QueryFrame, QueryWireResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => match request {
                    QueryFrame::Request { request, permit } => {
                        self.on_inbound_request(peer, request, QueryReply { channel, permit });
                    }
                    QueryFrame::Refused(refusal) => {
                        tracing::debug!(%peer, reason = %refusal.message, "inbound frame refused");
                        if let Some(m) = &self.overlay_metrics {
                            m.inbound_refused("frame", refusal.kind);
                        }
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .query
                            .send_response(channel, QueryWireResponse::Error(refusal));
                    }
                },
                request_response::Message::Response {
                    request_id,
                    response,
                } => match self.pending_requests.remove(&request_id) {
                    Some(Pending::Query { request, tx }) => {
                        tx.send(peer, check_answer(&peer, &request, response));
                    }
                    Some(Pending::Offer) => {
                        if let QueryWireResponse::OfferNoted { awarded } = response {
                            tracing::debug!(client = %peer, awarded, "offer answered");
                        }
                    }
                    Some(Pending::Settle { tx }) => {
                        let _ = tx.send(match response {
                            QueryWireResponse::Settled { new } => Ok(new),
                            QueryWireResponse::Error(e) => Err(OverlayError::Refused(e)),
                            _ => Err(OverlayError::BadAnswer {
                                peer: peer.to_string(),
                                reason: "not an acknowledgement of a settlement".to_string(),
                            }),
                        });
                    }
                    None => {}
                },
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let failure = OverlayError::Request {
                    peer: peer.to_string(),
                    reason: error.to_string(),
                };
                match self.pending_requests.remove(&request_id) {
                    Some(Pending::Query { tx, .. }) => tx.send(peer, Err(failure)),
                    Some(Pending::Settle { tx }) => {
                        let _ = tx.send(Err(failure));
                    }
                    Some(Pending::Offer) | None => {}
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound query failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Checks an inbound request and hands it on. `reply` holds the request's charge against the
    /// inbound byte limits: it travels with the request to the application, or is released here
    /// with the refusal.
    fn on_inbound_request(&mut self, peer: PeerId, request: QueryWireRequest, reply: QueryReply) {
        let response = match request {
            QueryWireRequest::Query(bytes)
                if bytes.len() > self.config.inbound.small_frame_bytes =>
            {
                self.check_off_the_loop(peer, bytes, reply);
                return;
            }
            QueryWireRequest::Query(bytes) => match check_inbound_query(&peer, &bytes, now_ms()) {
                Ok(request) => {
                    let event = Event::InboundQuery {
                        peer,
                        request: Box::new(request),
                        reply,
                    };
                    self.deliver(event);
                    return;
                }
                Err(e) => {
                    if let Some(m) = &self.overlay_metrics {
                        m.inbound_refused("query", e.kind);
                    }
                    self.strike_if_forged(peer, e.kind);
                    QueryWireResponse::Error(e)
                }
            },
            QueryWireRequest::Settle(bytes) => {
                match check_inbound_settle(&peer, &self.key.public(), &bytes) {
                    Ok(receipt) => {
                        let event = Event::InboundSettle {
                            peer,
                            receipt: Box::new(receipt),
                            reply,
                        };
                        self.deliver(event);
                        return;
                    }
                    Err(e) => {
                        if let Some(m) = &self.overlay_metrics {
                            m.inbound_refused("settle", e.kind);
                        }
                        self.strike_if_forged(peer, e.kind);
                        QueryWireResponse::Error(e)
                    }
                }
            }
            QueryWireRequest::Offer(bytes) => match self.note_offer(peer, &bytes) {
                Ok(call) => {
                    if let Some(call) = self.open_calls.get_mut(&call) {
                        // Held until the window closes; the award goes back on this channel.
                        if let Ok(offer) = Signed::<Offer>::from_bytes(&bytes) {
                            // An offer is a few hundred bytes, and at most
                            // `max_offers_per_call` are held: its charge can go now.
                            call.offers.push((peer, offer.into_value(), reply.channel));
                            return;
                        }
                    }
                    QueryWireResponse::OfferNoted { awarded: false }
                }
                Err(kind) => {
                    if let Some(m) = &self.overlay_metrics {
                        m.inbound_refused("offer", kind);
                    }
                    self.strike_if_forged(peer, kind);
                    error_response(kind, "offer refused")
                }
            },
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .query
            .send_response(reply.channel, response);
    }

    /// Checks a large query (its signature runs over the whole input: a 4 MiB input costs
    /// milliseconds in a release build and far more in a debug one) on the blocking pool, at most
    /// [`crate::InboundLimits::check_threads`] at once, so that the event loop goes on serving
    /// every other peer meanwhile. The result comes back through `checked_rx`. What waits here is
    /// bounded by the inbound byte budget, whose charge the reply still holds.
    fn check_off_the_loop(&mut self, peer: PeerId, bytes: Vec<u8>, reply: QueryReply) {
        let (tx, checking) = (self.checked_tx.clone(), Arc::clone(&self.checking));
        tokio::spawn(async move {
            let Ok(_permit) = checking.acquire_owned().await else {
                return;
            };
            let checked =
                tokio::task::spawn_blocking(move || check_inbound_query(&peer, &bytes, now_ms()))
                    .await;
            match checked {
                Ok(result) => {
                    let _ = tx
                        .send(Checked {
                            peer,
                            result,
                            reply,
                        })
                        .await;
                }
                // The check panicked (it never should): the reply is dropped, the peer times out.
                Err(e) => tracing::error!(%peer, error = %e, "checking an inbound query failed"),
            }
        });
    }

    /// A large query checked off the loop: handed on, or answered with why not.
    fn on_checked(&mut self, checked: Checked) {
        let Checked {
            peer,
            result,
            reply,
        } = checked;
        match result {
            Ok(request) => self.deliver(Event::InboundQuery {
                peer,
                request: Box::new(request),
                reply,
            }),
            Err(e) => {
                if let Some(m) = &self.overlay_metrics {
                    m.inbound_refused("query", e.kind);
                }
                self.strike_if_forged(peer, e.kind);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .query
                    .send_response(reply.channel, QueryWireResponse::Error(e));
            }
        }
    }

    /// Hands an inbound request to the application, or answers `Busy` at once when its queue is full
    /// (the event channel is bounded: a flood waits in no unbounded buffer).
    fn deliver(&mut self, event: Event) {
        let sent = self.events.try_send(event);
        self.refresh_queue_depth();
        let (reply, request) = match sent {
            Ok(()) => return,
            Err(
                mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event),
            ) => match event {
                Event::InboundQuery { reply, .. } => (reply, "query"),
                Event::InboundSettle { reply, .. } => (reply, "settle"),
            },
        };
        if let Some(m) = &self.overlay_metrics {
            m.inbound_refused(request, QueryErrorKind::Busy);
        }
        let _ = self.swarm.behaviour_mut().query.send_response(
            reply.channel,
            error_response(QueryErrorKind::Busy, "queue full: try later"),
        );
    }

    /// Checks an offer for one of our open calls: signed by the sending peer, for a call still open,
    /// within budget, still valid, and not past the per-call cap.
    fn note_offer(&self, peer: PeerId, bytes: &[u8]) -> Result<ContentId, QueryErrorKind> {
        let offer = Signed::<Offer>::from_bytes(bytes).map_err(|_| QueryErrorKind::BadSignature)?;
        if peer_id_of(&offer.signer()).ok() != Some(peer) {
            return Err(QueryErrorKind::BadSignature);
        }
        let o = offer.value();
        let call = self
            .open_calls
            .get(&o.query_id)
            .ok_or(QueryErrorKind::Expired)?;
        if o.price > call.max_price {
            return Err(QueryErrorKind::OverBudget);
        }
        if o.valid_until_ms < now_ms() {
            return Err(QueryErrorKind::Expired);
        }
        if call.offers.len() >= self.config.max_offers_per_call
            || call.offers.iter().any(|(p, _, _)| *p == peer)
        {
            return Err(QueryErrorKind::RateLimited);
        }
        Ok(o.query_id)
    }

    fn own_addrs(&self) -> (Reachability, Vec<String>) {
        let external: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        let direct = external.iter().any(|a| !is_relayed(a));
        let local = *self.swarm.local_peer_id();
        // The same address may be external twice (configured, and confirmed by AutoNAT with a
        // /p2p suffix): normalise to /p2p form and keep each once.
        let mut addrs: Vec<String> = Vec::new();
        for addr in &external {
            let text = addr
                .clone()
                .with_p2p(local)
                .unwrap_or_else(|a| a)
                .to_string();
            if !addrs.contains(&text) && addrs.len() < MAX_ADVERT_ADDRS {
                addrs.push(text);
            }
        }
        let reachability = if direct || external.is_empty() {
            Reachability::Direct
        } else {
            Reachability::RelayOnly
        };
        (reachability, addrs)
    }

    fn publish_adverts(&mut self) {
        if self.offers.is_empty() {
            return;
        }
        let (reachability, addrs) = self.own_addrs();
        let mut subnets: Vec<u16> = self.offers.iter().map(|o| o.subnet).collect();
        subnets.sort_unstable();
        subnets.dedup();
        for subnet in subnets {
            let advert = CapabilityAdvert {
                subnet,
                offers: self
                    .offers
                    .iter()
                    .filter(|o| o.subnet == subnet)
                    .map(|o| o.offer.clone())
                    .take(agora_protocols::advert::MAX_ADVERT_OFFERS)
                    .collect(),
                reachability,
                addrs: addrs.clone(),
                issued_at_ms: now_ms(),
                ttl_ms: u32::try_from(self.config.advert_ttl.as_millis()).unwrap_or(u32::MAX),
            };
            let bytes = match Signed::sign(advert, &self.key).and_then(|s| s.to_bytes()) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot sign advert");
                    continue;
                }
            };
            let topic = gossipsub::IdentTopic::new(advert_topic(subnet));
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
                // No subscriber yet is normal right after start.
                tracing::debug!(error = %e, subnet, "advert not published");
            }
        }
    }

    /// Registers provider records for everything we serve.
    fn provide(&mut self) {
        let keys: Vec<_> = self
            .offers
            .iter()
            .map(|o| provider_key(o.subnet, o.offer.task, &o.offer.model))
            .collect();
        for key in keys {
            if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                tracing::warn!(error = %e, "cannot store provider record");
            }
        }
        self.provided_at_table_size = Some(self.routing_table_size());
    }

    /// Events waiting in the bounded queue towards the application.
    fn refresh_queue_depth(&self) {
        if let Some(m) = &self.overlay_metrics {
            let depth = self
                .events
                .max_capacity()
                .saturating_sub(self.events.capacity());
            m.set_event_queue_depth(depth);
        }
    }

    /// Samples the gauges that are not counted as events happen.
    fn refresh_metrics(&mut self) {
        if self.overlay_metrics.is_none() {
            return;
        }
        let table = self.routing_table_size();
        let mesh: Vec<(&'static str, u16, usize)> = self
            .topics
            .iter()
            .map(|(hash, kind)| {
                let (name, subnet) = topic_label(*kind);
                let peers = self.swarm.behaviour().gossipsub.mesh_peers(hash).count();
                (name, subnet, peers)
            })
            .collect();
        self.providers.expire(now_ms());
        let providers = self.providers.len();
        self.refresh_queue_depth();
        if let Some(m) = &self.overlay_metrics {
            m.set_routing_table(table);
            for (name, subnet, peers) in mesh {
                m.set_mesh_peers(name, subnet, peers);
            }
            m.set_providers(providers);
        }
    }

    /// Counts a gossip verdict under its topic's kind and subnet.
    fn count_gossip(
        &self,
        topic: &gossipsub::TopicHash,
        acceptance: &gossipsub::MessageAcceptance,
    ) {
        let (Some(m), Some(kind)) = (&self.overlay_metrics, self.topics.get(topic)) else {
            return;
        };
        let (name, subnet) = topic_label(*kind);
        let verdict = match acceptance {
            gossipsub::MessageAcceptance::Accept => "accept",
            gossipsub::MessageAcceptance::Reject => "reject",
            gossipsub::MessageAcceptance::Ignore => "ignore",
        };
        m.gossip_verdict(name, subnet, verdict);
    }

    fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }

    /// A random walk to fill the routing table, expiry of stale adverts, and re-publication of our
    /// provider records while the routing table is still growing (records put before peers were
    /// known reached nobody).
    fn discover(&mut self) {
        self.maybe_request_relay();
        let size = self.routing_table_size();
        if size > 0 {
            self.swarm
                .behaviour_mut()
                .kad
                .get_closest_peers(PeerId::random());
        } else {
            // Nothing known: try the bootstrap nodes again (they may have restarted).
            for addr in self.config.bootstrap.clone() {
                let _ = self.swarm.dial(addr);
            }
        }
        self.providers.expire(now_ms());
        if !self.offers.is_empty() && size > 0 && self.provided_at_table_size != Some(size) {
            self.provide();
        }
    }

    fn status(&mut self) -> NodeStatus {
        let routing_table_peers = self.routing_table_size();
        let kad_mode = self.swarm.behaviour_mut().kad.mode().to_string();
        NodeStatus {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            external_addrs: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            nat: match self.nat {
                autonat::NatStatus::Public(_) => "public",
                autonat::NatStatus::Private => "private",
                autonat::NatStatus::Unknown => "unknown",
            }
            .to_string(),
            kad_mode,
            connected_peers: self.swarm.connected_peers().count(),
            routing_table_peers,
            providers: self.providers.len(),
            relays: self.relays.iter().map(|p| p.to_string()).collect(),
            inbound_bytes_held: self.swarm.behaviour().query.inbound_held_bytes(),
            inbound_bytes_peak: self.swarm.behaviour().query.inbound_peak_bytes(),
            banned: self
                .bans
                .iter()
                .filter(|(_, (until, _))| until.is_some())
                .map(|(p, _)| p.to_string())
                .collect(),
        }
    }

    fn peer_rows(&mut self) -> Vec<PeerRow> {
        let mut rows: HashMap<PeerId, PeerRow> = HashMap::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                rows.insert(
                    peer,
                    PeerRow {
                        peer: peer.to_string(),
                        connected: false,
                        in_routing_table: true,
                        addrs: entry.node.value.iter().map(|a| a.to_string()).collect(),
                        agent: None,
                        rtt_ms: None,
                        gossip_score: None,
                    },
                );
            }
        }
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            let row = rows.entry(peer).or_insert_with(|| PeerRow {
                peer: peer.to_string(),
                connected: true,
                in_routing_table: false,
                addrs: Vec::new(),
                agent: None,
                rtt_ms: None,
                gossip_score: None,
            });
            row.connected = true;
            row.gossip_score = self.swarm.behaviour().gossipsub.peer_score(&peer);
            if let Some(info) = self.peer_info.get(&peer) {
                row.agent.clone_from(&info.agent);
                row.rtt_ms = info
                    .rtt
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                if row.addrs.is_empty() {
                    row.addrs = info.addrs.iter().map(|a| a.to_string()).collect();
                }
            }
        }
        let mut rows: Vec<PeerRow> = rows.into_values().collect();
        rows.sort_by(|a, b| a.peer.cmp(&b.peer));
        rows
    }
}

/// The `topic` and `subnet` labels of a topic we joined.
fn topic_label(kind: TopicKind) -> (&'static str, u16) {
    match kind {
        TopicKind::Adverts(subnet) => ("adverts", subnet),
        TopicKind::Announcements(subnet) => ("announcements", subnet),
    }
}

/// The `kind` label and success of a finished Kademlia query.
fn lookup_outcome(result: &kad::QueryResult) -> (&'static str, bool) {
    match result {
        kad::QueryResult::GetProviders(r) => ("get_providers", r.is_ok()),
        kad::QueryResult::GetClosestPeers(r) => ("get_closest_peers", r.is_ok()),
        kad::QueryResult::Bootstrap(r) => ("bootstrap", r.is_ok()),
        kad::QueryResult::StartProviding(r) => ("start_providing", r.is_ok()),
        kad::QueryResult::RepublishProvider(r) => ("start_providing", r.is_ok()),
        kad::QueryResult::GetRecord(r) => ("other", r.is_ok()),
        kad::QueryResult::PutRecord(r) | kad::QueryResult::RepublishRecord(r) => {
            ("other", r.is_ok())
        }
    }
}
