//! Agora wallets: a coldkey and named hotkeys under a wallet directory, as in Bittensor, without its
//! weak points.
//!
//! - The coldkey is always encrypted at rest: Argon2id (random salt per file, costs stored in the
//!   file) and XChaCha20-Poly1305 ([`keyfile`]). A hotkey may be encrypted or not, since a node must be
//!   able to load it unattended.
//! - Secrets (seeds, passwords, phrases, decrypted buffers) are wiped from memory when dropped.
//! - Key files are written atomically with mode 0600 in 0700 directories, never replaced unless asked
//!   ([`Overwrite`]), and refused on read when other users could read them.
//! - Every key has a BIP-39 phrase (12 or 24 words) that restores it exactly ([`mnemonic`] documents
//!   the derivation).
//! - A node's libp2p identity is its hotkey: [`libp2p_keypair`] and [`peer_id`] make the peer id and
//!   the hotkey one key.
//! - Wrong password, corrupt file, tampered ciphertext and loose permissions are distinct errors
//!   ([`WalletError`], [`KeyfileError`]), and none of them writes anything.
//!
//! ```no_run
//! use agora_wallet::{KdfParams, Overwrite, Password, Protection, Wallet, WordCount};
//! # fn main() -> Result<(), agora_wallet::WalletError> {
//! let wallet = Wallet::new(&agora_wallet::default_root()?, "alice")?;
//! let password = Password::from_env("ALICE_PASSWORD")?;
//! let cold = wallet.create_coldkey(WordCount::TwentyFour, &password, KdfParams::STRONG, Overwrite::Refuse)?;
//! let hot = wallet.create_hotkey("default", WordCount::Twelve, Protection::Plaintext, Overwrite::Refuse)?;
//! println!("write these down: {} / {}", cold.mnemonic.phrase().as_str(), hot.mnemonic.phrase().as_str());
//! let hotkey = wallet.unlock_hotkey("default", None)?;
//! println!("peer id {}", agora_wallet::peer_id(&hotkey.public())?);
//! # Ok(()) }
//! ```

pub mod error;
mod fsio;
pub mod keyfile;
pub mod mnemonic;
mod password;
mod wallet;

pub use agora_protocols::{PublicKey, SecretKey, Signature};
pub use error::{KeyfileError, WalletError};
pub use fsio::Overwrite;
pub use keyfile::{KdfParams, KeyKind, Keyfile, Password, Protection};
pub use libp2p_identity;
pub use mnemonic::{Mnemonic, WordCount};
pub use wallet::{NewKey, Wallet, default_root, list_wallets};

use agora_protocols::Domain;
use zeroize::Zeroizing;

/// The domain of messages signed with `agora wallet sign`. Its own domain means a signed user message
/// can never pass as a receipt, an advert or any other protocol message.
pub const MESSAGE_DOMAIN: Domain = Domain::new("wallet/message", 1);

/// Signs an arbitrary user message under [`MESSAGE_DOMAIN`].
pub fn sign_message(key: &SecretKey, message: &[u8]) -> Signature {
    MESSAGE_DOMAIN.sign(key, message)
}

/// Checks a signature made by [`sign_message`].
pub fn verify_message(signer: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    MESSAGE_DOMAIN.verify(signer, message, signature)
}

/// The libp2p identity of a node whose hotkey is `hotkey`: the same ed25519 key, so the peer id
/// names the hotkey and a peer's signatures and its transport identity cannot be split apart.
pub fn libp2p_keypair(hotkey: &SecretKey) -> Result<libp2p_identity::Keypair, WalletError> {
    // libp2p wipes the buffer it is given; Zeroizing covers the error path too.
    let mut seed = Zeroizing::new(hotkey.seed());
    libp2p_identity::Keypair::ed25519_from_bytes(seed.as_mut_slice())
        .map_err(|e| WalletError::Identity(e.to_string()))
}

/// The libp2p peer id of a hotkey, from its public key alone (no password needed).
pub fn peer_id(hotkey: &PublicKey) -> Result<libp2p_identity::PeerId, WalletError> {
    let public = libp2p_identity::ed25519::PublicKey::try_from_bytes(&hotkey.to_bytes())
        .map_err(|e| WalletError::Identity(e.to_string()))?;
    Ok(libp2p_identity::PublicKey::from(public).to_peer_id())
}
