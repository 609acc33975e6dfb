//! The overlay's own Prometheus metrics: what a mesh operator watches besides libp2p's.
//!
//! libp2p-metrics (and gossipsub's built-in metrics) record protocol events into the same registry
//! under `agora_libp2p_*`; these add what only the event loop knows: connections and peers by
//! transport, the Kademlia routing table and lookups, gossip verdicts and mesh sizes per topic kind,
//! the provider table, inbound requests the overlay refused before the application saw them, and
//! the depth of the queue towards the application.
//!
//! Every label has a small fixed set of values (a transport, a topic kind, an error kind, a subnet
//! number this node joined): never a peer id or an address, so the series count stays bounded
//! however many peers come and go. Names and meanings are listed in `docs/metrics.md`.

use agora_protocols::QueryErrorKind;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;

/// The label value of a refusal kind (snake case, as in `docs/metrics.md`).
pub fn error_kind_label(kind: QueryErrorKind) -> &'static str {
    match kind {
        QueryErrorKind::Busy => "busy",
        QueryErrorKind::UnknownModel => "unknown_model",
        QueryErrorKind::OverBudget => "over_budget",
        QueryErrorKind::BadSignature => "bad_signature",
        QueryErrorKind::Expired => "expired",
        QueryErrorKind::Replay => "replay",
        QueryErrorKind::RateLimited => "rate_limited",
        QueryErrorKind::BadInput => "bad_input",
        QueryErrorKind::Internal => "internal",
    }
}

/// How a connection is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP with Noise and Yamux.
    Tcp,
    /// QUIC.
    Quic,
    /// Through a relay (a `/p2p-circuit` address), whatever the relay's own transport.
    Relayed,
    /// Anything else (a transport added later).
    Other,
}

impl Transport {
    /// All of them, for gauges that must show zeros too.
    pub const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Quic,
        Transport::Relayed,
        Transport::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::Relayed => "relayed",
            Transport::Other => "other",
        }
    }

    /// The transport of a connection from its endpoint.
    pub fn of(endpoint: &ConnectedPoint) -> Transport {
        if endpoint.is_relayed() {
            return Transport::Relayed;
        }
        Self::of_addr(endpoint.get_remote_address())
    }

    /// The transport an address names.
    pub fn of_addr(addr: &Multiaddr) -> Transport {
        let mut found = Transport::Other;
        for p in addr.iter() {
            match p {
                Protocol::P2pCircuit => return Transport::Relayed,
                Protocol::QuicV1 | Protocol::Quic => found = Transport::Quic,
                Protocol::Tcp(_) if found == Transport::Other => found = Transport::Tcp,
                _ => {}
            }
        }
        found
    }
}

/// `transport`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

/// `transport`, `direction`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    transport: &'static str,
    direction: &'static str,
}

/// `kind`, `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    kind: &'static str,
    result: &'static str,
}

/// `topic` (the kind of gossip topic), `subnet`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: &'static str,
    subnet: String,
}

/// `topic`, `subnet`, `verdict`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    topic: &'static str,
    subnet: String,
    verdict: &'static str,
}

/// `request`, `reason`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    request: &'static str,
    reason: &'static str,
}

/// The overlay's metric handles, registered once per node by [`OverlayMetrics::register`] and
/// updated by the event loop (its only user, so the connection map needs no lock).
#[derive(Debug)]
pub struct OverlayMetrics {
    connections: Family<ConnectionLabels, Gauge>,
    peers: Family<TransportLabels, Gauge>,
    peers_connected: Gauge,
    routing_table_peers: Gauge,
    lookups: Family<LookupLabels, Counter>,
    mesh_peers: Family<TopicLabels, Gauge>,
    gossip_messages: Family<VerdictLabels, Counter>,
    providers_known: Gauge,
    inbound_refused: Family<RefusedLabels, Counter>,
    event_queue_depth: Gauge,
    /// Open connections: the event loop's bookkeeping for the per-transport gauges (bounded by the
    /// connection limits).
    open: HashMap<ConnectionId, (PeerId, Transport, bool)>,
}

impl OverlayMetrics {
    /// Creates the handles and registers them in `registry` (whose prefix, `agora`, they get).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            connections: Family::default(),
            peers: Family::default(),
            peers_connected: Gauge::default(),
            routing_table_peers: Gauge::default(),
            lookups: Family::default(),
            mesh_peers: Family::default(),
            gossip_messages: Family::default(),
            providers_known: Gauge::default(),
            inbound_refused: Family::default(),
            event_queue_depth: Gauge::default(),
            open: HashMap::new(),
        };
        registry.register(
            "connections",
            "Open connections, by transport (tcp, quic, relayed, other) and direction (inbound, outbound)",
            m.connections.clone(),
        );
        registry.register(
            "peers",
            "Connected peers with at least one connection over the transport (a peer may count under several)",
            m.peers.clone(),
        );
        registry.register(
            "peers_connected",
            "Distinct connected peers",
            m.peers_connected.clone(),
        );
        registry.register(
            "kad_routing_table_peers",
            "Peers in the Kademlia routing table",
            m.routing_table_peers.clone(),
        );
        registry.register(
            "kad_lookups",
            "Kademlia queries this node started that finished, by kind (get_providers, get_closest_peers, bootstrap, start_providing, other) and result (ok, error)",
            m.lookups.clone(),
        );
        registry.register(
            "gossip_mesh_peers",
            "Peers in our gossipsub mesh of a topic, by topic kind (adverts, announcements) and subnet",
            m.mesh_peers.clone(),
        );
        registry.register(
            "gossip_messages",
            "Gossip messages validated by this node, by topic kind, subnet and verdict (accept, reject, ignore)",
            m.gossip_messages.clone(),
        );
        registry.register(
            "providers_known",
            "Providers in the provider table (from signed adverts)",
            m.providers_known.clone(),
        );
        registry.register(
            "overlay_inbound_refused",
            "Inbound requests refused by the overlay before the application saw them, by request (query, settle, offer) and reason",
            m.inbound_refused.clone(),
        );
        registry.register(
            "overlay_event_queue_depth",
            "Inbound queries and settlements waiting for the application (the queue is bounded; beyond it requests are refused busy)",
            m.event_queue_depth.clone(),
        );
        for transport in Transport::ALL {
            for direction in ["inbound", "outbound"] {
                m.connections
                    .get_or_create(&ConnectionLabels {
                        transport: transport.as_str(),
                        direction,
                    })
                    .set(0);
            }
            m.peers
                .get_or_create(&TransportLabels {
                    transport: transport.as_str(),
                })
                .set(0);
        }
        m
    }

    /// A connection is up.
    pub fn connection_opened(&mut self, id: ConnectionId, peer: PeerId, endpoint: &ConnectedPoint) {
        self.open
            .insert(id, (peer, Transport::of(endpoint), endpoint.is_dialer()));
        self.refresh_connections();
    }

    /// A connection is gone.
    pub fn connection_closed(&mut self, id: ConnectionId) {
        if self.open.remove(&id).is_some() {
            self.refresh_connections();
        }
    }

    fn refresh_connections(&self) {
        let mut conns: HashMap<(Transport, bool), i64> = HashMap::new();
        let mut peers: HashMap<Transport, std::collections::HashSet<PeerId>> = HashMap::new();
        let mut all = std::collections::HashSet::new();
        for (peer, transport, dialer) in self.open.values() {
            *conns.entry((*transport, *dialer)).or_insert(0) += 1;
            peers.entry(*transport).or_default().insert(*peer);
            all.insert(*peer);
        }
        for transport in Transport::ALL {
            for (dialer, direction) in [(false, "inbound"), (true, "outbound")] {
                self.connections
                    .get_or_create(&ConnectionLabels {
                        transport: transport.as_str(),
                        direction,
                    })
                    .set(conns.get(&(transport, dialer)).copied().unwrap_or(0));
            }
            let n = peers.get(&transport).map_or(0, |p| p.len());
            self.peers
                .get_or_create(&TransportLabels {
                    transport: transport.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.peers_connected
            .set(i64::try_from(all.len()).unwrap_or(i64::MAX));
    }

    /// The routing table's size now.
    pub fn set_routing_table(&self, peers: usize) {
        self.routing_table_peers
            .set(i64::try_from(peers).unwrap_or(i64::MAX));
    }

    /// A Kademlia query of ours finished.
    pub fn lookup_finished(&self, kind: &'static str, ok: bool) {
        self.lookups
            .get_or_create(&LookupLabels {
                kind,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Our mesh of a topic has `peers` peers.
    pub fn set_mesh_peers(&self, topic: &'static str, subnet: u16, peers: usize) {
        self.mesh_peers
            .get_or_create(&TopicLabels {
                topic,
                subnet: subnet.to_string(),
            })
            .set(i64::try_from(peers).unwrap_or(i64::MAX));
    }

    /// A gossip message got a verdict.
    pub fn gossip_verdict(&self, topic: &'static str, subnet: u16, verdict: &'static str) {
        self.gossip_messages
            .get_or_create(&VerdictLabels {
                topic,
                subnet: subnet.to_string(),
                verdict,
            })
            .inc();
    }

    /// The provider table holds `n` providers.
    pub fn set_providers(&self, n: usize) {
        self.providers_known
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The overlay refused an inbound `request` (query, settle, offer) for `kind`.
    pub fn inbound_refused(&self, request: &'static str, kind: QueryErrorKind) {
        self.inbound_refused
            .get_or_create(&RefusedLabels {
                request,
                reason: error_kind_label(kind),
            })
            .inc();
    }

    /// `n` events wait for the application.
    pub fn set_event_queue_depth(&self, n: usize) {
        self.event_queue_depth
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// The OpenMetrics content type, what Prometheus asks for and gets by default.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format (0.0.4), for tools that only read that one (`promtool check
/// metrics`, old scrapers).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encodes `registry` for a scrape whose `Accept` header is `accept`: OpenMetrics text, unless the
/// client asks for `text/plain` and does not accept OpenMetrics, in which case the same families
/// in the classic text format 0.0.4. Returns the content type and the body.
pub fn encode_for(
    registry: &Registry,
    accept: Option<&str>,
) -> Result<(&'static str, String), std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    let classic = accept.is_some_and(|a| {
        let a = a.to_ascii_lowercase();
        a.contains("text/plain") && !a.contains("openmetrics")
    });
    if classic {
        Ok((TEXT_CONTENT_TYPE, openmetrics_to_classic(&body)))
    } else {
        Ok((OPENMETRICS_CONTENT_TYPE, body))
    }
}

/// Rewrites OpenMetrics text as the classic Prometheus text format: a counter family is named
/// with its `_total` suffix in `# HELP`/`# TYPE` (as its samples are), an info family becomes a
/// gauge named `_info`, `_created` samples, `# UNIT` lines and `# EOF` go (the classic format has
/// none of them). Samples are otherwise identical.
pub fn openmetrics_to_classic(text: &str) -> String {
    let mut kinds: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                kinds.insert(name, kind);
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        if let Some((what, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let renamed = match kinds.get(name).copied() {
                Some("counter") => format!("{name}_total"),
                Some("info") => format!("{name}_info"),
                _ => name.to_string(),
            };
            let tail = if what == "TYPE" && tail == "info" {
                "gauge"
            } else {
                tail
            };
            out.push_str(&format!("# {what} {renamed} {tail}\n"));
            continue;
        }
        if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            if let Some(base) = name.strip_suffix("_created")
                && kinds
                    .get(base)
                    .is_some_and(|k| *k == "counter" || *k == "histogram")
            {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn transports_are_told_apart_by_address() {
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let quic: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        let relayed: Multiaddr =
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
                .parse()
                .unwrap();
        assert_eq!(Transport::of_addr(&tcp), Transport::Tcp);
        assert_eq!(Transport::of_addr(&quic), Transport::Quic);
        assert_eq!(Transport::of_addr(&relayed), Transport::Relayed);
    }

    #[test]
    fn gauges_follow_connections_and_zeros_are_exposed() {
        let mut registry = Registry::with_prefix("agora");
        let mut m = OverlayMetrics::register(&mut registry);
        let peer = PeerId::random();
        let endpoint = ConnectedPoint::Dialer {
            address: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            role_override: libp2p::core::Endpoint::Dialer,
            port_use: libp2p::core::transport::PortUse::Reuse,
        };
        let id = ConnectionId::new_unchecked(1);
        m.connection_opened(id, peer, &endpoint);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("agora_connections{transport=\"tcp\",direction=\"outbound\"} 1"));
        assert!(text.contains("agora_peers{transport=\"quic\"} 0"));
        assert!(text.contains("agora_peers_connected 1"));
        m.connection_closed(id);
        text.clear();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("agora_connections{transport=\"tcp\",direction=\"outbound\"} 0"));
        assert!(text.contains("agora_peers_connected 0"));
    }

    #[test]
    fn classic_text_names_counters_with_total_and_drops_eof() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total 3\n\
                  # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n# EOF\n";
        let classic = openmetrics_to_classic(om);
        assert_eq!(
            classic,
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total 3\n\
             # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n"
        );
        let registry = Registry::with_prefix("agora");
        let (kind, _) = encode_for(&registry, Some("text/plain; version=0.0.4")).unwrap();
        assert_eq!(kind, TEXT_CONTENT_TYPE);
        let (kind, body) = encode_for(
            &registry,
            Some("application/openmetrics-text; version=1.0.0,text/plain;q=0.5"),
        )
        .unwrap();
        assert_eq!(kind, OPENMETRICS_CONTENT_TYPE);
        assert!(body.ends_with("# EOF\n"));
    }
}
