//! The marketplace: who serves, who buys, and how every answer is settled.
//!
//! A provider ([`provider`]) runs models ([`runner`]) behind admission rules ([`admission`]: replay
//! window and nonces, per-peer rate limits, the client's credit) and stores its half of each receipt
//! before it answers. A client ([`client`]) picks providers by a policy ([`policy`]) that weighs
//! consensus reputation, its own experience, price and load; verifies every answer against the
//! provider's signature; countersigns, stores, then sends the countersignature back. A validator
//! ([`validator`]) challenges miners, scores their answers and publishes weights on the ledger.

pub mod admission;
pub mod client;
pub mod fair;
pub mod policy;
pub mod provider;
pub mod runner;
pub mod validator;
