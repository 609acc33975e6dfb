//! The libp2p node of the Agora mesh. Filled by the overlay issue.
