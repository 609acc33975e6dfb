//! Capability adverts: a provider's signed statement of what it serves, at what price, how loaded.
//!
//! Adverts travel on the subnet's gossip topic every few seconds and back the provider table that
//! clients choose from. They are signed by the provider's hotkey, which is also its libp2p identity,
//! so a node can check that the peer that relayed an advert first is the peer that it describes.

use crate::receipt::{MAX_MODEL_NAME_LEN, Task};
use crate::signed::{Domain, WireMessage};
use serde::{Deserialize, Serialize};

/// Format version of [`CapabilityAdvert`].
pub const ADVERT_VERSION: u16 = 1;
/// Most listen addresses an advert may carry.
pub const MAX_ADVERT_ADDRS: usize = 8;
/// Longest address string accepted, in bytes.
pub const MAX_ADDR_LEN: usize = 256;
/// Most models one advert may list.
pub const MAX_ADVERT_OFFERS: usize = 16;

/// How other peers can reach the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reachability {
    /// Publicly reachable: dial its listen addresses directly.
    Direct,
    /// Behind a NAT: reachable only through a relay (a direct path may follow with hole punching).
    RelayOnly,
}

/// One model a provider serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOffer {
    /// Kind of work.
    pub task: Task,
    /// Model name, e.g. `all-minilm-l6-v2`.
    pub model: String,
    /// Price per query, in units of 1e-9.
    pub price: u64,
    /// Queries waiting in the model's queue when the advert was made.
    pub queue_depth: u32,
    /// Measured throughput, queries per second times 1000.
    pub throughput_milli: u32,
}

/// What a provider serves on a subnet. Signed with [`crate::Signed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityAdvert {
    /// Subnet the advert is for.
    pub subnet: u16,
    /// The models on offer.
    pub offers: Vec<ModelOffer>,
    /// How to reach the provider.
    pub reachability: Reachability,
    /// Multiaddresses to dial, as text (including `/p2p-circuit` ones when relayed).
    pub addrs: Vec<String>,
    /// When the advert was made (milliseconds since the Unix epoch).
    pub issued_at_ms: u64,
    /// How long after `issued_at_ms` the advert stays valid.
    pub ttl_ms: u32,
}

impl WireMessage for CapabilityAdvert {
    const DOMAIN: Domain = Domain::new("advert", ADVERT_VERSION);
    const MAX_LEN: usize = 8 * 1024;
}

impl CapabilityAdvert {
    /// Checks the bounds that the codec's size limit alone does not express.
    pub fn validate(&self) -> Result<(), String> {
        if self.offers.is_empty() || self.offers.len() > MAX_ADVERT_OFFERS {
            return Err(format!("an advert lists 1..={MAX_ADVERT_OFFERS} models"));
        }
        if self.addrs.len() > MAX_ADVERT_ADDRS {
            return Err(format!(
                "an advert lists at most {MAX_ADVERT_ADDRS} addresses"
            ));
        }
        if let Some(offer) = self
            .offers
            .iter()
            .find(|o| o.model.is_empty() || o.model.len() > MAX_MODEL_NAME_LEN)
        {
            return Err(format!("model name of {} bytes", offer.model.len()));
        }
        if self.addrs.iter().any(|a| a.len() > MAX_ADDR_LEN) {
            return Err(format!("an address is longer than {MAX_ADDR_LEN} bytes"));
        }
        Ok(())
    }

    /// Whether the advert is still valid at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms <= self.issued_at_ms.saturating_add(u64::from(self.ttl_ms))
    }
}
