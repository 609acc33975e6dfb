//! Bindings of the `AgoraLedger` contract, generated from the committed artifact
//! (`contracts/artifacts/AgoraLedger.json`, ABI and creation bytecode), so the Rust side always
//! matches what `contracts/compile.js` produces from the source; a test checks that the source
//! still compiles to that artifact.

#![allow(missing_docs, missing_debug_implementations)]

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    AgoraLedger,
    "../contracts/artifacts/AgoraLedger.json"
);
