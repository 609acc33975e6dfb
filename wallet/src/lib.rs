//! Agora wallets. Filled by the foundation issue.
