//! Agora's ledger: receipts store, state machine, Yuma consensus, emission. Filled by the consensus issue.
