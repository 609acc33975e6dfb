//! The provider table: who serves what, learned from signed capability adverts on gossip.
//!
//! Entries are keyed by the provider's peer id (one advert per provider and subnet, the newest wins),
//! expire when their advert's validity ends, and the table never holds more than its capacity: when
//! full, the entry with the oldest advert makes room. Kademlia provider records are the fallback for
//! a client that has not yet heard any adverts; they only say *who*, adverts also say at what price.

use agora_protocols::{CapabilityAdvert, Signed, Task};
use libp2p::PeerId;
use libp2p::kad::RecordKey;
use serde::Serialize;
use std::collections::HashMap;

/// The blake3 context of provider record keys.
const PROVIDER_KEY_CONTEXT: &str = "agora 2026-11 provider key v1";

/// The Kademlia key under which providers of `model` for `task` on `subnet` register.
///
/// A keyed hash of the triple, so that keys spread evenly over the DHT and a model name cannot be
/// crafted to collide with another triple's key.
pub fn provider_key(subnet: u16, task: Task, model: &str) -> RecordKey {
    let mut hasher = blake3::Hasher::new_derive_key(PROVIDER_KEY_CONTEXT);
    hasher.update(&subnet.to_le_bytes());
    hasher.update(task.as_str().as_bytes());
    hasher.update(&[0]);
    hasher.update(model.as_bytes());
    RecordKey::new(hasher.finalize().as_bytes())
}

/// The gossip topic of a subnet's capability adverts.
pub fn advert_topic(subnet: u16) -> String {
    format!("agora/subnet/{subnet}/adverts")
}

/// The gossip topic of a subnet's open-call query announcements.
pub fn announce_topic(subnet: u16) -> String {
    format!("agora/subnet/{subnet}/queries")
}

/// Why a gossiped advert was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvertVerdict {
    /// Forged, malformed, or on the wrong topic: reject it (the forwarding peer's score drops).
    Invalid,
    /// Well-formed but expired: drop it without blame (it may simply have travelled slowly).
    Stale,
}

/// Checks a gossiped advert before it is forwarded or stored: the envelope's signature, that its
/// signer is the gossip message's author (a peer cannot advertise for another), that it is for the
/// topic's subnet, its bounds, and its freshness.
pub fn check_advert(
    source: &PeerId,
    topic_subnet: u16,
    bytes: &[u8],
    now_ms: u64,
) -> Result<Signed<CapabilityAdvert>, AdvertVerdict> {
    let advert =
        Signed::<CapabilityAdvert>::from_bytes(bytes).map_err(|_| AdvertVerdict::Invalid)?;
    if crate::query::peer_id_of(&advert.signer()).ok().as_ref() != Some(source)
        || advert.value().subnet != topic_subnet
        || advert.value().validate().is_err()
    {
        return Err(AdvertVerdict::Invalid);
    }
    if !advert.value().is_live(now_ms) {
        return Err(AdvertVerdict::Stale);
    }
    Ok(advert)
}

/// One provider as the table knows it.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    /// The provider.
    pub peer: PeerId,
    /// Its latest verified advert.
    pub advert: Signed<CapabilityAdvert>,
    /// When it arrived here (milliseconds since the Unix epoch).
    pub received_at_ms: u64,
}

/// A flat, serialisable view of one (provider, model) pair, for the HTTP API and the CLI.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ProviderRow {
    /// Provider peer id.
    pub peer: String,
    /// Subnet.
    pub subnet: u16,
    /// Task name.
    pub task: String,
    /// Model name.
    pub model: String,
    /// Price per query (units of 1e-9).
    pub price: u64,
    /// Queue depth when advertised.
    pub queue_depth: u32,
    /// Throughput, queries per second times 1000.
    pub throughput_milli: u32,
    /// "direct" or "relay".
    pub reachability: String,
    /// Addresses the provider gave.
    pub addrs: Vec<String>,
    /// Age of the advert in milliseconds.
    pub age_ms: u64,
    /// Where we learned of it: "gossip" or "dht".
    pub source: String,
}

/// Providers by peer id, bounded and expiring.
#[derive(Debug)]
pub struct ProviderTable {
    entries: HashMap<(PeerId, u16), ProviderEntry>,
    capacity: usize,
}

impl ProviderTable {
    /// An empty table holding at most `capacity` (provider, subnet) entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records a verified advert from `peer`. An older advert than the one held is ignored (gossip
    /// may deliver out of order). Returns whether the table changed.
    pub fn insert(&mut self, peer: PeerId, advert: Signed<CapabilityAdvert>, now_ms: u64) -> bool {
        let key = (peer, advert.value().subnet);
        if let Some(old) = self.entries.get(&key)
            && old.advert.value().issued_at_ms >= advert.value().issued_at_ms
        {
            return false;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.expire(now_ms);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.advert.value().issued_at_ms)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            key,
            ProviderEntry {
                peer,
                advert,
                received_at_ms: now_ms,
            },
        );
        true
    }

    /// Drops every entry whose advert is no longer live. Returns how many went.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.advert.value().is_live(now_ms));
        before - self.entries.len()
    }

    /// Live entries serving `task` (and `model`, if given) on any subnet, cheapest first.
    pub fn rows(&self, task: Option<Task>, model: Option<&str>, now_ms: u64) -> Vec<ProviderRow> {
        let mut rows: Vec<ProviderRow> = self
            .entries
            .values()
            .filter(|e| e.advert.value().is_live(now_ms))
            .flat_map(|e| {
                let advert = e.advert.value();
                advert
                    .offers
                    .iter()
                    .filter(|o| task.is_none_or(|t| o.task == t))
                    .filter(|o| model.is_none_or(|m| o.model == m))
                    .map(|o| ProviderRow {
                        peer: e.peer.to_string(),
                        subnet: advert.subnet,
                        task: o.task.as_str().to_string(),
                        model: o.model.clone(),
                        price: o.price,
                        queue_depth: o.queue_depth,
                        throughput_milli: o.throughput_milli,
                        reachability: match advert.reachability {
                            agora_protocols::Reachability::Direct => "direct".to_string(),
                            agora_protocols::Reachability::RelayOnly => "relay".to_string(),
                        },
                        addrs: advert.addrs.clone(),
                        age_ms: now_ms.saturating_sub(advert.issued_at_ms),
                        source: "gossip".to_string(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort_by(|a, b| {
            a.price
                .cmp(&b.price)
                .then(a.queue_depth.cmp(&b.queue_depth))
        });
        rows
    }

    /// The entry of `peer` on `subnet`.
    pub fn get(&self, peer: &PeerId, subnet: u16) -> Option<&ProviderEntry> {
        self.entries.get(&(*peer, subnet))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use agora_protocols::{ModelOffer, Reachability, SecretKey};

    fn advert(key: &SecretKey, issued: u64) -> Signed<CapabilityAdvert> {
        Signed::sign(
            CapabilityAdvert {
                subnet: 1,
                offers: vec![ModelOffer {
                    task: Task::Embed,
                    model: "m".into(),
                    price: 5,
                    queue_depth: 0,
                    throughput_milli: 1000,
                }],
                reachability: Reachability::Direct,
                addrs: vec![],
                issued_at_ms: issued,
                ttl_ms: 1000,
            },
            key,
        )
        .unwrap()
    }

    #[test]
    fn expires_bounds_and_keeps_newest() {
        let mut table = ProviderTable::new(2);
        let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::generate()).collect();
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        assert!(table.insert(peers[0], advert(&keys[0], 100), 100));
        assert!(
            !table.insert(peers[0], advert(&keys[0], 50), 100),
            "older advert ignored"
        );
        assert!(table.insert(peers[1], advert(&keys[1], 200), 200));
        assert!(table.insert(peers[2], advert(&keys[2], 300), 300));
        assert_eq!(table.len(), 2, "bounded");
        assert!(table.get(&peers[0], 1).is_none(), "oldest evicted");
        assert_eq!(table.rows(Some(Task::Embed), None, 300).len(), 2);
        assert_eq!(table.rows(Some(Task::Generate), None, 300).len(), 0);
        assert_eq!(table.expire(1250), 1);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn adverts_are_checked_before_forwarding() {
        let key = SecretKey::generate();
        let peer = crate::query::peer_id_of(&key.public()).unwrap();
        let bytes = advert(&key, 1000).to_bytes().unwrap();
        assert!(check_advert(&peer, 1, &bytes, 1500).is_ok());
        // Relayed under another author's name.
        assert_eq!(
            check_advert(&PeerId::random(), 1, &bytes, 1500).unwrap_err(),
            AdvertVerdict::Invalid
        );
        // On another subnet's topic.
        assert_eq!(
            check_advert(&peer, 2, &bytes, 1500).unwrap_err(),
            AdvertVerdict::Invalid
        );
        // Expired.
        assert_eq!(
            check_advert(&peer, 1, &bytes, 5000).unwrap_err(),
            AdvertVerdict::Stale
        );
        // Any flipped byte: invalid, never a panic.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(check_advert(&peer, 1, &bad, 1500).is_err(), "byte {i}");
        }
        assert!(check_advert(&peer, 1, &[], 1500).is_err());
    }

    #[test]
    fn provider_keys_differ_per_triple() {
        let a = provider_key(1, Task::Embed, "m");
        assert_eq!(a, provider_key(1, Task::Embed, "m"));
        assert_ne!(a, provider_key(2, Task::Embed, "m"));
        assert_ne!(a, provider_key(1, Task::Generate, "m"));
        assert_ne!(a, provider_key(1, Task::Embed, "n"));
    }
}
