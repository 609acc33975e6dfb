//! Ledger transactions: what a key may ask the state machine to do, and every way it can be refused.
//!
//! A transaction travels as a [`Signed<Transaction>`](agora_protocols::Signed) under the domain
//! [`TX_DOMAIN`], so its signature cannot be replayed as any other kind of Agora message, and the
//! signer's key is bound in. The ordered log carries the envelope's exact bytes; every node decodes
//! and checks them itself ([`decode_tx`]), so a transaction with a bad signature is refused the same
//! way everywhere instead of being trusted because someone else put it in the log.

use super::hyper::{HyperError, Hyperparameters};
use agora_protocols::codec::{self, CodecError};
use agora_protocols::signed::{Domain, SignError, WireMessage};
use agora_protocols::{PublicKey, SecretKey, Signature, Signed};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Domain of ledger transaction signatures.
pub const TX_DOMAIN: Domain = Domain::new("ledger/tx", 1);
/// Domain of the hotkey's consent to be owned by a coldkey (see [`Call::AssociateHotkey`]).
pub const BIND_DOMAIN: Domain = Domain::new("ledger/bind-hotkey", 1);
/// Largest encoded transaction payload: a full weight vector (256 uids) is about 1 KiB.
pub const MAX_TX_LEN: usize = 8 * 1024;
/// Largest salt a weight commit may use: enough for 256 random bits many times over.
pub const MAX_SALT_LEN: usize = 64;
/// Bytes of envelope around a payload (version, signer, length, signature): the largest signed
/// transaction is `MAX_TX_LEN + TX_ENVELOPE_OVERHEAD` bytes.
pub const TX_ENVELOPE_OVERHEAD: usize = 2 + 32 + 8 + 64;

/// Which of its two roles the signing key acts in. A key is a hotkey once a coldkey owns it
/// ([`Call::AssociateHotkey`]); every other key is a coldkey. Declaring the role in the signed bytes
/// means a signature made by a hotkey for weights can never be taken as a coldkey's spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Holds money and owns hotkeys: transfers, stake, subnets, registrations.
    Coldkey,
    /// Acts for a neuron in a subnet: weights.
    Hotkey,
}

/// A signed ledger transaction's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The role the signer acts in; it must match the call's role and the key's standing.
    pub role: Role,
    /// Per-signer sequence number: must be strictly greater than the signer's last accepted nonce.
    /// Gaps are allowed, so a signer can cancel a refused transaction by using a later nonce.
    pub nonce: u64,
    /// What to do.
    pub call: Call,
}

impl WireMessage for Transaction {
    const DOMAIN: Domain = TX_DOMAIN;
    const MAX_LEN: usize = MAX_TX_LEN;
}

/// The operations of the ledger. Amounts are units of 1e-9 token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// Coldkey: move free balance to any key.
    Transfer {
        /// Recipient.
        to: PublicKey,
        /// Units.
        amount: u64,
    },
    /// Coldkey: take ownership of `hotkey`. `proof` is the hotkey's signature under
    /// [`BIND_DOMAIN`] over the coldkey's 32 bytes ([`hotkey_binding_proof`]), so both keys consent
    /// in one transaction: no coldkey can claim another's hotkey, and no hotkey can saddle a coldkey
    /// that did not sign.
    AssociateHotkey {
        /// The hotkey to own.
        hotkey: PublicKey,
        /// The hotkey's consent.
        proof: Signature,
    },
    /// Coldkey: move free balance into stake on any owned hotkey (delegation when the hotkey
    /// belongs to someone else).
    AddStake {
        /// The hotkey staked to.
        hotkey: PublicKey,
        /// Units.
        amount: u64,
    },
    /// Coldkey: move stake on a hotkey back to free balance.
    RemoveStake {
        /// The hotkey unstaked from.
        hotkey: PublicKey,
        /// Units.
        amount: u64,
    },
    /// Coldkey (the hotkey's owner): the share of delegated dividends kept by the hotkey's owner,
    /// `u16` proportion.
    SetTake {
        /// The owner's hotkey.
        hotkey: PublicKey,
        /// New take, at most the ledger's `max_take_u16`.
        take_u16: u16,
    },
    /// Coldkey: create a subnet owned by the signer, paying the ledger's subnet lock cost.
    CreateSubnet {
        /// Hyperparameters, or the spec's defaults when absent.
        hyperparameters: Option<Hyperparameters>,
        /// The owner's hotkey on this subnet (must be owned by the signer): it keeps a permit, its
        /// self-weight counts and it is never pruned.
        owner_hotkey: Option<PublicKey>,
    },
    /// Coldkey: register an owned hotkey on a subnet, paying the subnet's current burn price.
    Register {
        /// The subnet.
        netuid: u16,
        /// The hotkey, owned by the signer.
        hotkey: PublicKey,
    },
    /// Hotkey: set weights directly (only on subnets with commit-reveal off).
    SetWeights {
        /// The subnet.
        netuid: u16,
        /// Destination uids.
        uids: Vec<u16>,
        /// Weight per uid (any scale; stored max-upscaled to 65535).
        weights: Vec<u16>,
    },
    /// Hotkey: commit to weights by hash ([`weights_commit_hash`]), revealed later. Commits queue
    /// per (subnet, hotkey), at most [`super::MAX_UNREVEALED_COMMITS`] unrevealed ones (expired
    /// ones are purged first); each is revealed in the epoch `reveal_period_epochs` after its own
    /// ([`super::Subnet::weights_epoch`]), as on the chain (`do_commit_weights`).
    CommitWeights {
        /// The subnet.
        netuid: u16,
        /// blake3 of the canonical (hotkey, netuid, uids, weights, salt).
        commit_hash: [u8; 32],
    },
    /// Hotkey: reveal committed weights; they then count like [`Call::SetWeights`]. The commit is
    /// found in the queue by its hash, and revealing it also discards every older commit still
    /// queued, as the chain's `do_reveal_weights` does.
    RevealWeights {
        /// The subnet.
        netuid: u16,
        /// Destination uids.
        uids: Vec<u16>,
        /// Weight per uid.
        weights: Vec<u16>,
        /// The salt hashed into the commit.
        salt: Vec<u8>,
    },
}

impl Call {
    /// The role a call must be signed in.
    pub fn role(&self) -> Role {
        match self {
            Call::SetWeights { .. } | Call::CommitWeights { .. } | Call::RevealWeights { .. } => {
                Role::Hotkey
            }
            _ => Role::Coldkey,
        }
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Transfer { .. } => "transfer",
            Call::AssociateHotkey { .. } => "associate_hotkey",
            Call::AddStake { .. } => "add_stake",
            Call::RemoveStake { .. } => "remove_stake",
            Call::SetTake { .. } => "set_take",
            Call::CreateSubnet { .. } => "create_subnet",
            Call::Register { .. } => "register",
            Call::SetWeights { .. } => "set_weights",
            Call::CommitWeights { .. } => "commit_weights",
            Call::RevealWeights { .. } => "reveal_weights",
        }
    }
}

/// Signs a transaction with `key`, in the role its call needs.
pub fn sign_tx(key: &SecretKey, nonce: u64, call: Call) -> Result<Signed<Transaction>, CodecError> {
    let role = call.role();
    Signed::sign(Transaction { role, nonce, call }, key)
}

/// Decodes and checks a transaction's envelope as it came from the log. A failure here is a
/// [`TxError`] like any other refusal, so every node refuses the same bytes the same way.
pub fn decode_tx(bytes: &[u8]) -> Result<Signed<Transaction>, TxError> {
    Signed::<Transaction>::from_bytes(bytes).map_err(|e| match e {
        SignError::BadSignature { .. } => TxError::BadSignature,
        SignError::UnsupportedVersion { got, .. } => TxError::UnsupportedVersion(got),
        SignError::Codec(e) => TxError::Malformed(e.to_string()),
    })
}

/// The hotkey's consent for [`Call::AssociateHotkey`]: its signature over the coldkey.
pub fn hotkey_binding_proof(hotkey: &SecretKey, coldkey: &PublicKey) -> Signature {
    BIND_DOMAIN.sign(hotkey, &coldkey.to_bytes())
}

/// Checks a hotkey binding proof.
pub fn verify_binding_proof(hotkey: &PublicKey, coldkey: &PublicKey, proof: &Signature) -> bool {
    BIND_DOMAIN.verify(hotkey, &coldkey.to_bytes(), proof)
}

/// The commit hash of a weight vector: blake3 of the canonical encoding of
/// `(hotkey, netuid, uids, weights, salt)`. Binding the hotkey in means a validator cannot
/// copy another's commit and reveal the other's weights as its own.
pub fn weights_commit_hash(
    hotkey: &PublicKey,
    netuid: u16,
    uids: &[u16],
    weights: &[u16],
    salt: &[u8],
) -> Result<[u8; 32], CodecError> {
    let bytes = codec::encode(&(hotkey, netuid, uids, weights, salt))?;
    Ok(*blake3::hash(&bytes).as_bytes())
}

/// Why a transaction was refused. Each refusal depends only on the transaction and the state it
/// is applied to, so every node gives the same one; a refused transaction changes nothing, not even
/// the signer's nonce.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum TxError {
    /// The envelope's signature does not match its signer and payload.
    #[error("bad signature")]
    BadSignature,
    /// The envelope has a version this ledger does not speak.
    #[error("transaction version {0} is not supported")]
    UnsupportedVersion(u16),
    /// The bytes are not a transaction envelope.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// The declared role is not the one the call needs.
    #[error("{call} must be signed by a {needed:?}, not a {declared:?}")]
    WrongRole {
        /// The call.
        call: &'static str,
        /// The role it needs.
        needed: Role,
        /// The role declared.
        declared: Role,
    },
    /// A coldkey-role transaction signed by a key that is a hotkey.
    #[error("the signer is a hotkey and cannot act as a coldkey")]
    SignerIsHotkey,
    /// A hotkey-role transaction signed by a key no coldkey owns.
    #[error("the signer is not a hotkey (no coldkey owns it)")]
    SignerNotHotkey,
    /// The nonce is not above the signer's last accepted one.
    #[error("nonce {got} is not above the last accepted nonce {last}")]
    StaleNonce {
        /// The nonce given.
        got: u64,
        /// The last accepted.
        last: u64,
    },
    /// Not enough free balance.
    #[error("balance {balance} is below the {needed} needed")]
    InsufficientBalance {
        /// Free balance.
        balance: u64,
        /// Amount needed.
        needed: u64,
    },
    /// Not enough stake on the hotkey.
    #[error("stake {stake} is below the {needed} asked for")]
    InsufficientStake {
        /// Stake held.
        stake: u64,
        /// Amount asked.
        needed: u64,
    },
    /// Zero amounts are refused: they would only burn a nonce.
    #[error("amount must be above zero")]
    ZeroAmount,
    /// A stake amount below the ledger's minimum stake operation.
    #[error("stake amount {amount} is below the minimum {min}")]
    BelowMinStake {
        /// Amount given.
        amount: u64,
        /// Minimum.
        min: u64,
    },
    /// A credit would overflow a balance, stake or total.
    #[error("arithmetic overflow")]
    Overflow,
    /// Transfers to a hotkey are refused: a hotkey cannot sign as a coldkey, so the money would be
    /// stranded. Stake to it instead.
    #[error("recipient {0} is a hotkey; stake to it instead")]
    RecipientIsHotkey(Box<PublicKey>),
    /// A key tried to own itself.
    #[error("a key cannot be its own hotkey")]
    SelfAssociation,
    /// The hotkey's binding proof is not its signature over the signer.
    #[error("the hotkey's binding proof does not verify")]
    BadBindingProof,
    /// The hotkey already has an owner.
    #[error("hotkey {0} is already owned")]
    HotkeyAlreadyOwned(Box<PublicKey>),
    /// The key to become a hotkey has been used as a coldkey (balance, stake or nonce): it
    /// would lose access to them.
    #[error("key {0} is in use as a coldkey and cannot become a hotkey")]
    KeyInUseAsColdkey(Box<PublicKey>),
    /// The hotkey has no owner.
    #[error("hotkey {0} is not owned by any coldkey")]
    UnknownHotkey(Box<PublicKey>),
    /// The hotkey belongs to another coldkey.
    #[error("hotkey {0} is not owned by the signer")]
    NotHotkeyOwner(Box<PublicKey>),
    /// A take above the maximum.
    #[error("take {take} is above the maximum {max}")]
    TakeTooHigh {
        /// Take given.
        take: u16,
        /// Maximum.
        max: u16,
    },
    /// A take increase within the rate limit.
    #[error("take may next be increased at block {next}")]
    TakeRateLimited {
        /// First block an increase is allowed.
        next: u64,
    },
    /// Invalid subnet hyperparameters.
    #[error("invalid hyperparameters: {0}")]
    Hyperparameters(#[from] HyperError),
    /// No more subnets may be created.
    #[error("the ledger already has the maximum of {0} subnets")]
    TooManySubnets(u16),
    /// The subnet does not exist.
    #[error("subnet {0} does not exist")]
    UnknownSubnet(u16),
    /// The hotkey already has a uid on the subnet.
    #[error("hotkey is already registered on subnet {0}")]
    AlreadyRegistered(u16),
    /// The subnet is full and every uid is owner-immortal.
    #[error("subnet {0} is full and no uid can be replaced")]
    SubnetFull(u16),
    /// The hotkey has no uid on the subnet.
    #[error("hotkey is not registered on subnet {0}")]
    NotRegistered(u16),
    /// `uids` and `weights` differ in length, or are empty or longer than the subnet.
    #[error("weights: {0}")]
    BadWeights(String),
    /// The subnet requires commit-reveal: direct weights are refused.
    #[error("subnet {0} uses commit-reveal: commit, then reveal")]
    CommitRevealRequired(u16),
    /// The subnet has commit-reveal off: commits are refused.
    #[error("subnet {0} does not use commit-reveal: set weights directly")]
    CommitRevealDisabled(u16),
    /// Weights or commits too soon after the last.
    #[error("weights rate limit: next allowed at block {next}")]
    WeightsRateLimited {
        /// First block allowed.
        next: u64,
    },
    /// A reveal while the hotkey has no unexpired commit on the subnet (the chain's
    /// `NoWeightsCommitFound`).
    #[error("no pending weight commit on subnet {0}")]
    NoCommit(u16),
    /// A reveal whose hash matches none of the hotkey's unexpired commits: wrong weights or salt
    /// (the chain's `InvalidRevealCommitHashNotMatch`).
    #[error("the revealed weights and salt match none of the pending commits")]
    CommitMismatch,
    /// A reveal before its commit's reveal epoch.
    #[error("reveal too early: allowed in epoch {reveal_epoch}, now epoch {now}")]
    RevealTooEarly {
        /// The epoch the reveal belongs to.
        reveal_epoch: u64,
        /// The current epoch.
        now: u64,
    },
    /// A reveal of a commit whose reveal epoch has passed: it has expired (the chain's
    /// `ExpiredWeightCommit`).
    #[error("reveal too late: allowed in epoch {reveal_epoch}, now epoch {now}")]
    RevealTooLate {
        /// The epoch the reveal belonged to.
        reveal_epoch: u64,
        /// The current epoch.
        now: u64,
    },
    /// A salt longer than [`MAX_SALT_LEN`].
    #[error("salt of {0} bytes is over the {MAX_SALT_LEN}-byte limit")]
    SaltTooLong(usize),
    /// A commit while the hotkey already holds [`super::MAX_UNREVEALED_COMMITS`] unexpired
    /// commits on the subnet: reveal (or let expire) some first.
    #[error(
        "already {max} unrevealed weight commits on subnet {0}: reveal or let some expire first",
        max = super::MAX_UNREVEALED_COMMITS
    )]
    TooManyUnrevealedCommits(u16),
}
