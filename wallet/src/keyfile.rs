//! The keyfile format: one ed25519 seed, encrypted or not, with its public key in the clear.
//!
//! A keyfile is a small JSON document (format version 1):
//!
//! ```json
//! {
//!   "format": "agora-keyfile",
//!   "version": 1,
//!   "kind": "coldkey",
//!   "public_key": "<64 hex>",
//!   "secret": {
//!     "encryption": "argon2id-xchacha20poly1305",
//!     "kdf": { "name": "argon2id", "m_cost_kib": 65536, "t_cost": 3, "p_cost": 1, "salt": "<32 hex>" },
//!     "cipher": { "name": "xchacha20poly1305", "nonce": "<48 hex>" },
//!     "check": "<64 hex>",
//!     "ciphertext": "<96 hex>"
//!   }
//! }
//! ```
//!
//! or, for a hotkey kept unencrypted, `"secret": { "encryption": "none", "seed": "<64 hex>" }`.
//!
//! Encryption: Argon2id(password, salt, m, t, p) gives a 32-byte master key; blake3 `derive_key`
//! splits it into the XChaCha20-Poly1305 key and a 32-byte password check. The check lets a wrong
//! password be told apart from a damaged ciphertext (it gives an attacker nothing the ciphertext did
//! not: both test a password guess at the cost of one Argon2id run). The ciphertext is the 32-byte
//! seed plus the 16-byte tag; the associated data binds the format version, the kind, the public key
//! and the KDF parameters, so no header field can be swapped without the file failing to open.
//!
//! The public key sits in the clear so that `show` and `list` need no password.

use crate::error::KeyfileError;
use agora_protocols::{PublicKey, SecretKey, keys::fill_random};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;
const FORMAT_NAME: &str = "agora-keyfile";
/// No keyfile comes close to this; anything larger is rejected before parsing.
pub const MAX_KEYFILE_BYTES: u64 = 16 * 1024;

const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const SEED_LEN: usize = 32;

const CONTEXT_ENCRYPTION_KEY: &str = "agora-wallet 2026-11-24 keyfile v1 encryption key";
const CONTEXT_PASSWORD_CHECK: &str = "agora-wallet 2026-11-24 keyfile v1 password check";

/// Which role a key plays. Recorded in the file and bound into the encryption, so a hotkey file
/// cannot be passed off as a coldkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// The key that holds funds and stake; always encrypted, kept off servers.
    Coldkey,
    /// The key a running node signs with; its libp2p peer id is derived from it.
    Hotkey,
}

impl KeyKind {
    fn tag(self) -> u8 {
        match self {
            Self::Coldkey => 1,
            Self::Hotkey => 2,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Coldkey => "coldkey",
            Self::Hotkey => "hotkey",
        })
    }
}

/// A password, wiped from memory when dropped.
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// The shortest password accepted when a key is encrypted.
    pub const MIN_LEN: usize = 8;

    /// Takes ownership of the bytes (they are wiped on drop).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Takes ownership of a string (it is wiped on drop).
    pub fn from_string(text: String) -> Self {
        Self::new(text.into_bytes())
    }

    /// The password bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Rejects passwords too short to protect a key; called only when encrypting, so that files made
    /// elsewhere with shorter passwords still open.
    pub fn check_strength(&self) -> Result<(), KeyfileError> {
        if self.0.len() < Self::MIN_LEN {
            return Err(KeyfileError::WeakPassword { min: Self::MIN_LEN });
        }
        Ok(())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Argon2id cost parameters, stored in each file so they can be raised later without breaking old
/// files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The default for new files: 64 MiB, 3 passes, 1 lane (above OWASP's Argon2id minimum; about a
    /// quarter of a second per unlock on a laptop).
    pub const STRONG: Self = Self {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// The cheapest parameters Argon2 allows. For tests only: a file made with these falls to a
    /// password guesser quickly.
    pub const INSECURE_FAST: Self = Self {
        m_cost_kib: 8,
        t_cost: 1,
        p_cost: 1,
    };

    /// Largest memory accepted from a file: 4 GiB.
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// Most passes accepted from a file.
    pub const MAX_T_COST: u32 = 64;
    /// Most lanes accepted from a file.
    pub const MAX_P_COST: u32 = 64;

    /// Checks the bounds that keep a crafted file from exhausting memory or time, and Argon2's own.
    pub fn validate(&self) -> Result<(), KeyfileError> {
        let Self {
            m_cost_kib,
            t_cost,
            p_cost,
        } = *self;
        if p_cost == 0 || p_cost > Self::MAX_P_COST {
            return Err(KeyfileError::KdfParams(format!(
                "p_cost {p_cost} not in 1..={}",
                Self::MAX_P_COST
            )));
        }
        if t_cost == 0 || t_cost > Self::MAX_T_COST {
            return Err(KeyfileError::KdfParams(format!(
                "t_cost {t_cost} not in 1..={}",
                Self::MAX_T_COST
            )));
        }
        let min_m = 8u32.saturating_mul(p_cost);
        if m_cost_kib < min_m || m_cost_kib > Self::MAX_M_COST_KIB {
            return Err(KeyfileError::KdfParams(format!(
                "m_cost_kib {m_cost_kib} not in {min_m}..={}",
                Self::MAX_M_COST_KIB
            )));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::STRONG
    }
}

/// How a new key is stored.
#[derive(Debug, Clone, Copy)]
pub enum Protection<'a> {
    /// Encrypted with this password and these Argon2id costs.
    Encrypted {
        /// The password.
        password: &'a Password,
        /// The Argon2id costs.
        kdf: KdfParams,
    },
    /// Stored in the clear (still a 0600 file). Only for hotkeys, which a node must be able to load
    /// unattended.
    Plaintext,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    format: String,
    version: u64,
    kind: KeyKind,
    public_key: String,
    secret: SecretJson,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "encryption", deny_unknown_fields)]
enum SecretJson {
    #[serde(rename = "argon2id-xchacha20poly1305")]
    Encrypted {
        kdf: KdfJson,
        cipher: CipherJson,
        check: String,
        ciphertext: String,
    },
    #[serde(rename = "none")]
    Plaintext { seed: String },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    name: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherJson {
    name: String,
    nonce: String,
}

/// Only the fields needed to tell an unknown version from a corrupt file.
#[derive(Deserialize)]
struct VersionProbe {
    format: Option<String>,
    version: Option<u64>,
}

/// The encrypted part of a keyfile, decoded and checked for shape.
#[derive(Clone)]
struct Sealed {
    kdf: KdfParams,
    salt: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    check: [u8; 32],
    ciphertext: [u8; SEED_LEN + TAG_LEN],
}

#[derive(Clone)]
enum Secret {
    Sealed(Box<Sealed>),
    Plain(Zeroizing<[u8; SEED_LEN]>),
}

/// A parsed keyfile. Holds the secret only in encrypted form, unless the file stores it in the clear.
#[derive(Clone)]
pub struct Keyfile {
    kind: KeyKind,
    public: PublicKey,
    secret: Secret,
}

impl fmt::Debug for Keyfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyfile")
            .field("kind", &self.kind)
            .field("public", &self.public)
            .field("encrypted", &self.is_encrypted())
            .finish_non_exhaustive()
    }
}

fn corrupt(reason: impl Into<String>) -> KeyfileError {
    KeyfileError::Corrupt(reason.into())
}

fn hex_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N], KeyfileError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| corrupt(format!("field `{field}` is not {} hex digits", 2 * N)))?;
    Ok(out)
}

impl Keyfile {
    /// Encrypts (or stores) `key` as a new keyfile, with a fresh random salt and nonce.
    pub fn seal(
        kind: KeyKind,
        key: &SecretKey,
        protection: Protection<'_>,
    ) -> Result<Self, KeyfileError> {
        if kind == KeyKind::Coldkey && matches!(protection, Protection::Plaintext) {
            return Err(KeyfileError::UnencryptedColdkey);
        }
        let public = key.public();
        let seed = Zeroizing::new(key.seed());
        let secret = match protection {
            Protection::Plaintext => Secret::Plain(seed),
            Protection::Encrypted { password, kdf } => {
                password.check_strength()?;
                kdf.validate()?;
                let mut salt = vec![0u8; SALT_LEN];
                fill_random(&mut salt);
                let mut nonce = [0u8; NONCE_LEN];
                fill_random(&mut nonce);
                let keys = derive_keys(password, &salt, kdf)?;
                let aad = associated_data(kind, &public, kdf, &salt);
                let cipher = cipher_for(&keys)?;
                let mut buffer: Zeroizing<Vec<u8>> =
                    Zeroizing::new(Vec::with_capacity(SEED_LEN + TAG_LEN));
                buffer.extend_from_slice(seed.as_slice());
                cipher
                    .encrypt_in_place(&XNonce::from(nonce), &aad, &mut *buffer)
                    .map_err(|_| KeyfileError::Kdf("encryption failed".into()))?;
                let mut ciphertext = [0u8; SEED_LEN + TAG_LEN];
                if buffer.len() != ciphertext.len() {
                    return Err(KeyfileError::Kdf("unexpected ciphertext length".into()));
                }
                ciphertext.copy_from_slice(&buffer);
                Secret::Sealed(Box::new(Sealed {
                    kdf,
                    salt,
                    nonce,
                    check: keys.check,
                    ciphertext,
                }))
            }
        };
        Ok(Self {
            kind,
            public,
            secret,
        })
    }

    /// Parses a keyfile, checking its shape but not the password. Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyfileError> {
        if bytes.len() as u64 > MAX_KEYFILE_BYTES {
            return Err(KeyfileError::TooLarge(bytes.len() as u64));
        }
        let probe: VersionProbe = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("not a JSON keyfile ({e})")))?;
        if probe.format.as_deref() != Some(FORMAT_NAME) {
            return Err(corrupt(format!("missing \"format\": \"{FORMAT_NAME}\"")));
        }
        match probe.version {
            Some(FORMAT_VERSION) => {}
            Some(other) => return Err(KeyfileError::UnsupportedVersion(other)),
            None => return Err(corrupt("missing \"version\"")),
        }
        let file: FileJson = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let public = PublicKey::from_hex(&file.public_key)
            .map_err(|e| corrupt(format!("field `public_key`: {e}")))?;
        let secret = match file.secret {
            SecretJson::Plaintext { seed } => {
                let seed = Zeroizing::new(seed);
                if file.kind == KeyKind::Coldkey {
                    return Err(KeyfileError::UnencryptedColdkey);
                }
                Secret::Plain(Zeroizing::new(hex_array::<SEED_LEN>("seed", &seed)?))
            }
            SecretJson::Encrypted {
                kdf,
                cipher,
                check,
                ciphertext,
            } => {
                if kdf.name != "argon2id" {
                    return Err(corrupt(format!("unknown kdf {:?}", kdf.name)));
                }
                if cipher.name != "xchacha20poly1305" {
                    return Err(corrupt(format!("unknown cipher {:?}", cipher.name)));
                }
                let params = KdfParams {
                    m_cost_kib: kdf.m_cost_kib,
                    t_cost: kdf.t_cost,
                    p_cost: kdf.p_cost,
                };
                params.validate()?;
                let salt =
                    hex::decode(&kdf.salt).map_err(|_| corrupt("field `salt` is not hex"))?;
                if !(SALT_LEN..=64).contains(&salt.len()) {
                    return Err(corrupt(format!(
                        "salt of {} bytes (expected {SALT_LEN} to 64)",
                        salt.len()
                    )));
                }
                Secret::Sealed(Box::new(Sealed {
                    kdf: params,
                    salt,
                    nonce: hex_array("nonce", &cipher.nonce)?,
                    check: hex_array("check", &check)?,
                    ciphertext: hex_array("ciphertext", &ciphertext)?,
                }))
            }
        };
        Ok(Self {
            kind: file.kind,
            public,
            secret,
        })
    }

    /// The JSON bytes of this keyfile (wiped on drop, since they may hold a plaintext seed).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, KeyfileError> {
        let secret = match &self.secret {
            Secret::Plain(seed) => SecretJson::Plaintext {
                seed: hex::encode(seed.as_slice()),
            },
            Secret::Sealed(sealed) => SecretJson::Encrypted {
                kdf: KdfJson {
                    name: "argon2id".into(),
                    m_cost_kib: sealed.kdf.m_cost_kib,
                    t_cost: sealed.kdf.t_cost,
                    p_cost: sealed.kdf.p_cost,
                    salt: hex::encode(&sealed.salt),
                },
                cipher: CipherJson {
                    name: "xchacha20poly1305".into(),
                    nonce: hex::encode(sealed.nonce),
                },
                check: hex::encode(sealed.check),
                ciphertext: hex::encode(sealed.ciphertext),
            },
        };
        let mut file = FileJson {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            kind: self.kind,
            public_key: self.public.to_hex(),
            secret,
        };
        let mut out = Zeroizing::new(Vec::with_capacity(2048));
        let written =
            serde_json::to_writer_pretty(&mut *out, &file).map_err(|e| corrupt(e.to_string()));
        if let SecretJson::Plaintext { seed } = &mut file.secret {
            seed.zeroize();
        }
        written?;
        out.push(b'\n');
        Ok(out)
    }

    /// Coldkey or hotkey, as recorded in the file.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The public key, readable without a password.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Whether opening the key needs a password.
    pub fn is_encrypted(&self) -> bool {
        matches!(self.secret, Secret::Sealed(_))
    }

    /// The Argon2id costs of an encrypted file.
    pub fn kdf_params(&self) -> Option<KdfParams> {
        match &self.secret {
            Secret::Sealed(sealed) => Some(sealed.kdf),
            Secret::Plain(_) => None,
        }
    }

    /// Opens the key. `password` is ignored for a plaintext file and required for an encrypted one.
    pub fn open(&self, password: Option<&Password>) -> Result<SecretKey, KeyfileError> {
        let key = match &self.secret {
            Secret::Plain(seed) => SecretKey::from_seed(seed),
            Secret::Sealed(sealed) => {
                let password = password.ok_or(KeyfileError::PasswordRequired)?;
                let keys = derive_keys(password, &sealed.salt, sealed.kdf)?;
                // blake3's Hash compares in constant time.
                if blake3::Hash::from(keys.check) != blake3::Hash::from(sealed.check) {
                    return Err(KeyfileError::WrongPassword);
                }
                let aad = associated_data(self.kind, &self.public, sealed.kdf, &sealed.salt);
                let cipher = cipher_for(&keys)?;
                let mut buffer: Zeroizing<Vec<u8>> = Zeroizing::new(sealed.ciphertext.to_vec());
                cipher
                    .decrypt_in_place(&XNonce::from(sealed.nonce), &aad, &mut *buffer)
                    .map_err(|_| KeyfileError::Tampered)?;
                let mut seed = Zeroizing::new([0u8; SEED_LEN]);
                if buffer.len() != SEED_LEN {
                    return Err(KeyfileError::Tampered);
                }
                seed.copy_from_slice(&buffer);
                SecretKey::from_seed(&seed)
            }
        };
        if key.public() != self.public {
            return Err(KeyfileError::KeyMismatch);
        }
        Ok(key)
    }
}

/// The two keys derived from one Argon2id run; wiped on drop.
struct DerivedKeys {
    encryption: [u8; 32],
    check: [u8; 32],
}

impl Drop for DerivedKeys {
    fn drop(&mut self) {
        self.encryption.zeroize();
        self.check.zeroize();
    }
}

fn derive_keys(
    password: &Password,
    salt: &[u8],
    kdf: KdfParams,
) -> Result<DerivedKeys, KeyfileError> {
    kdf.validate()?;
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
        .map_err(|e| KeyfileError::KdfParams(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut master = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password.as_bytes(), salt, master.as_mut_slice())
        .map_err(|e| KeyfileError::Kdf(e.to_string()))?;
    Ok(DerivedKeys {
        encryption: blake3::derive_key(CONTEXT_ENCRYPTION_KEY, master.as_slice()),
        check: blake3::derive_key(CONTEXT_PASSWORD_CHECK, master.as_slice()),
    })
}

/// The cipher keyed from the derived key, borrowed in place so no unwiped copy of the key is made
/// (the cipher itself wipes its key on drop).
fn cipher_for(keys: &DerivedKeys) -> Result<XChaCha20Poly1305, KeyfileError> {
    XChaCha20Poly1305::new_from_slice(&keys.encryption)
        .map_err(|_| KeyfileError::Kdf("cipher key of the wrong length".into()))
}

/// Everything in the header that must not change without the file failing to open.
fn associated_data(kind: KeyKind, public: &PublicKey, kdf: KdfParams, salt: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + salt.len());
    aad.extend_from_slice(FORMAT_NAME.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    aad.push(kind.tag());
    aad.extend_from_slice(&public.to_bytes());
    aad.extend_from_slice(&kdf.m_cost_kib.to_le_bytes());
    aad.extend_from_slice(&kdf.t_cost.to_le_bytes());
    aad.extend_from_slice(&kdf.p_cost.to_le_bytes());
    aad.extend_from_slice(salt);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password() -> Password {
        Password::from_string("correct horse battery".into())
    }

    #[test]
    fn seal_and_open_round_trip() {
        let key = SecretKey::generate();
        let pw = password();
        let file = Keyfile::seal(
            KeyKind::Coldkey,
            &key,
            Protection::Encrypted {
                password: &pw,
                kdf: KdfParams::INSECURE_FAST,
            },
        )
        .unwrap();
        let bytes = file.to_bytes().unwrap();
        let parsed = Keyfile::parse(&bytes).unwrap();
        assert!(parsed.is_encrypted());
        assert_eq!(parsed.open(Some(&pw)).unwrap().public(), key.public());
        assert!(matches!(
            parsed.open(None),
            Err(KeyfileError::PasswordRequired)
        ));
        let wrong = Password::from_string("wrong horse battery".into());
        assert!(matches!(
            parsed.open(Some(&wrong)),
            Err(KeyfileError::WrongPassword)
        ));
    }

    #[test]
    fn plaintext_round_trip() {
        let key = SecretKey::generate();
        let file = Keyfile::seal(KeyKind::Hotkey, &key, Protection::Plaintext).unwrap();
        let parsed = Keyfile::parse(&file.to_bytes().unwrap()).unwrap();
        assert!(!parsed.is_encrypted());
        assert_eq!(parsed.open(None).unwrap().seed(), key.seed());
    }

    #[test]
    fn a_coldkey_is_never_stored_in_the_clear() {
        let key = SecretKey::generate();
        let err = Keyfile::seal(KeyKind::Coldkey, &key, Protection::Plaintext).unwrap_err();
        assert!(matches!(err, KeyfileError::UnencryptedColdkey));
        // Nor read as one: a hand-made plaintext coldkey is refused.
        let hot = Keyfile::seal(KeyKind::Hotkey, &key, Protection::Plaintext).unwrap();
        let text = String::from_utf8(hot.to_bytes().unwrap().to_vec()).unwrap();
        let forged = text.replace("\"hotkey\"", "\"coldkey\"");
        assert!(matches!(
            Keyfile::parse(forged.as_bytes()),
            Err(KeyfileError::UnencryptedColdkey)
        ));
    }

    #[test]
    fn short_password_rejected_on_seal() {
        let pw = Password::from_string("short".into());
        let err = Keyfile::seal(
            KeyKind::Coldkey,
            &SecretKey::generate(),
            Protection::Encrypted {
                password: &pw,
                kdf: KdfParams::INSECURE_FAST,
            },
        )
        .unwrap_err();
        assert!(matches!(err, KeyfileError::WeakPassword { .. }));
    }

    #[test]
    fn absurd_kdf_params_rejected_before_running() {
        for params in [
            KdfParams {
                m_cost_kib: u32::MAX,
                t_cost: 1,
                p_cost: 1,
            },
            KdfParams {
                m_cost_kib: 64,
                t_cost: u32::MAX,
                p_cost: 1,
            },
            KdfParams {
                m_cost_kib: 64,
                t_cost: 1,
                p_cost: 0,
            },
            KdfParams {
                m_cost_kib: 7,
                t_cost: 1,
                p_cost: 1,
            },
        ] {
            assert!(
                matches!(params.validate(), Err(KeyfileError::KdfParams(_))),
                "{params:?}"
            );
        }
        KdfParams::STRONG.validate().unwrap();
        KdfParams::INSECURE_FAST.validate().unwrap();
    }
}
