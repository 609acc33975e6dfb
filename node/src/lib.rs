//! The `agora` crate: the marketplace's client and provider, the OpenAI-compatible gateway, and the
//! `agora` command that wires them to the mesh (`src/main.rs`, `src/cli`).
//!
//! - [`market`]: a miner serving models ([`market::provider`]) and a client buying answers from the
//!   mesh ([`market::client`]), with receipts signed by both sides and stored before acknowledgement.
//! - [`gateway`]: an HTTP front in OpenAI's shapes, so existing tools query the mesh unchanged.
//! - [`metrics`]: the marketplace's Prometheus metrics and the recent history the status page shows.
//! - [`status`]: the web status page and `/metrics`, served on every node's `--http` address.
//! - [`config_file`]: decoding the operator's TOML configuration file (the command layers it under
//!   the environment and the flags).

pub mod config_file;
pub mod gateway;
pub mod market;
pub mod metrics;
pub mod status;
