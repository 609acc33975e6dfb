//! Agora's fuzz targets, one plain function per decoder of network or file input.
//!
//! Each target is `fn(&[u8])`: it hands the bytes to the real decoder, exactly as the node does with
//! what arrives from a peer or a file, and where the bytes decode it checks the invariants the rest
//! of the code relies on (the canonical bytes round-trip, a verified value re-verifies, a Merkle
//! proof that verifies is a proof of the true leaf, the ledger conserves its supply). A target
//! panics only when an invariant breaks; a decoder that panics is a bug in the decoder.
//!
//! The same functions run in three places, so nothing is written twice:
//! - `fuzz/` (the cargo-fuzz crate): one `fuzz_target!` per function, driven by libFuzzer
//!   (`scripts/fuzz`);
//! - `tests/corpus.rs`: every file of every target's corpus (`fuzz/corpus/<target>/`) through its
//!   function, as a plain `cargo test`;
//! - [`seeds`] (and the `agora-fuzz-seeds` binary): real encoded messages and files, the corpora's
//!   starting points.

pub mod files;
pub mod fixtures;
pub mod ledger;
pub mod seeds;
pub mod wire;

pub use files::{balances_genesis, config, gguf, keyfile, ledger_genesis, safetensors};
pub use ledger::{anchor_journal, anchor_record, inclusion_proof, ledger_log, ledger_tx};
pub use wire::{
    advert, embed_input, embed_output, generate_input, generate_output, merkle_proof, offer,
    query_announcement, query_request, query_wire_request, query_wire_response, receipt,
};

/// One fuzz target: its name (the cargo-fuzz target and the corpus folder) and its function.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name of the `fuzz_target!` binary and of `fuzz/corpus/<name>/`.
    pub name: &'static str,
    /// The function libFuzzer and the corpus test call.
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "query_wire_request",
        run: query_wire_request,
    },
    Target {
        name: "query_wire_response",
        run: query_wire_response,
    },
    Target {
        name: "query_request",
        run: query_request,
    },
    Target {
        name: "query_announcement",
        run: query_announcement,
    },
    Target {
        name: "offer",
        run: offer,
    },
    Target {
        name: "advert",
        run: advert,
    },
    Target {
        name: "receipt",
        run: receipt,
    },
    Target {
        name: "merkle_proof",
        run: merkle_proof,
    },
    Target {
        name: "embed_input",
        run: embed_input,
    },
    Target {
        name: "embed_output",
        run: embed_output,
    },
    Target {
        name: "generate_input",
        run: generate_input,
    },
    Target {
        name: "generate_output",
        run: generate_output,
    },
    Target {
        name: "ledger_tx",
        run: ledger_tx,
    },
    Target {
        name: "ledger_log",
        run: ledger_log,
    },
    Target {
        name: "anchor_record",
        run: anchor_record,
    },
    Target {
        name: "anchor_journal",
        run: anchor_journal,
    },
    Target {
        name: "inclusion_proof",
        run: inclusion_proof,
    },
    Target {
        name: "keyfile",
        run: keyfile,
    },
    Target {
        name: "balances_genesis",
        run: balances_genesis,
    },
    Target {
        name: "ledger_genesis",
        run: ledger_genesis,
    },
    Target {
        name: "gguf",
        run: gguf,
    },
    Target {
        name: "safetensors",
        run: safetensors,
    },
    Target {
        name: "config",
        run: config,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}
