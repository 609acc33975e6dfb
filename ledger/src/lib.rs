//! Agora's ledger: receipts store, state machine, Yuma consensus, emission.
//!
//! Consensus and emission follow the Bittensor chain to the bit (`spec/consensus.md`), so they are
//! pure functions over plain data: [`consensus::run_epoch`] and the [`emission`] schedule.

pub mod anchor;
pub mod balances;
pub mod chain;
pub mod consensus;
pub mod emission;
mod framing;
pub mod log;
pub mod state;
pub mod store;
