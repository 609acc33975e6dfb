//! `agora wallet`: create, restore, inspect and use coldkey/hotkey wallets.
//!
//! Only the command line lives here (flags, prompts, output); keys, files and formats belong to
//! `agora-wallet`. Secrets read here (passwords, phrases) go straight into wiping types.

use agora_wallet::{
    KdfParams, KeyfileError, Mnemonic, Overwrite, Password, Protection, PublicKey, Signature,
    Wallet, WalletError, WordCount,
};
use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zeroize::Zeroizing;

/// Coldkey/hotkey wallets under `~/.agora/wallets/<name>/`.
///
/// A wallet holds one coldkey (owns funds and stake; always encrypted; keep it off servers) and any
/// number of hotkeys (what a running node signs with; a node's peer id is its hotkey). Every key has
/// a BIP-39 backup phrase, shown once when the key is created.
#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create a wallet: an encrypted coldkey and a first hotkey, each with its own backup phrase.
    New(NewArgs),
    /// Add a hotkey to an existing wallet.
    NewHotkey(NewHotkeyArgs),
    /// List wallets with their public keys and peer ids (no password needed).
    List(ListArgs),
    /// Show one wallet: keys, peer ids, how each key is protected (no password needed).
    Show(ShowArgs),
    /// Restore a coldkey or hotkey from its backup phrase (the same phrase gives the same key).
    Regen(RegenArgs),
    /// Sign a message with a hotkey or the coldkey; prints the signature in hex.
    Sign(SignArgs),
    /// Check a signature made by `agora wallet sign`; exit status 0 if valid, 1 if not.
    Verify(VerifyArgs),
}

/// Where wallets live.
#[derive(Debug, Args)]
pub(crate) struct WalletPath {
    /// Directory holding all wallets [default: ~/.agora/wallets].
    #[arg(long, env = "AGORA_WALLET_PATH", value_name = "DIR")]
    wallet_path: Option<PathBuf>,
}

impl WalletPath {
    fn root(&self) -> anyhow::Result<PathBuf> {
        match &self.wallet_path {
            Some(path) => Ok(path.clone()),
            None => Ok(agora_wallet::default_root()?),
        }
    }

    pub(crate) fn wallet(&self, name: &str) -> anyhow::Result<Wallet> {
        Ok(Wallet::new(&self.root()?, name)?)
    }
}

/// Where the password of the key being created or opened comes from. Without either flag it is asked
/// for on the terminal.
#[derive(Debug, Args)]
pub(crate) struct PasswordArgs {
    /// Read the password from this file (all of it, less one trailing newline).
    #[arg(long, value_name = "PATH", conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
    /// Read the password from the environment variable of this name (give the name, not the
    /// password).
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
}

/// Word count of a new backup phrase.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Words {
    #[value(name = "12")]
    Twelve,
    #[value(name = "24")]
    TwentyFour,
}

impl From<Words> for WordCount {
    fn from(words: Words) -> Self {
        match words {
            Words::Twelve => WordCount::Twelve,
            Words::TwentyFour => WordCount::TwentyFour,
        }
    }
}

/// Costs of the password hash of new keys.
#[derive(Debug, Args)]
struct KdfArgs {
    /// Use the cheapest Argon2id costs instead of 64 MiB / 3 passes. For tests only: such a file
    /// falls quickly to password guessing.
    #[arg(long, hide = true)]
    insecure_fast_kdf: bool,
}

impl KdfArgs {
    fn params(&self) -> KdfParams {
        if self.insecure_fast_kdf {
            eprintln!(
                "warning: --insecure-fast-kdf: this key's password is cheap to guess; for tests only"
            );
            KdfParams::INSECURE_FAST
        } else {
            KdfParams::STRONG
        }
    }
}

const HOTKEY_PASSWORD: &str = "Hotkey password (asked on the terminal if none is given)";

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Name of the wallet (its directory under the wallet path).
    #[arg(long, short = 'n', value_name = "NAME")]
    name: String,
    /// Length of the backup phrases.
    #[arg(long, value_enum, default_value = "12")]
    words: Words,
    /// Name of the first hotkey.
    #[arg(long, value_name = "NAME", default_value = "default")]
    hotkey: String,
    /// Create the coldkey only.
    #[arg(long)]
    no_hotkey: bool,
    /// Replace existing keys of the same names. Their old keys are gone unless you have their phrases.
    #[arg(long)]
    overwrite: bool,
    /// Print the result as JSON (phrases included) instead of text.
    #[arg(long)]
    json: bool,
    #[command(
        flatten,
        next_help_heading = "Coldkey password (asked on the terminal if neither is given)"
    )]
    password: PasswordArgs,
    /// Store the hotkey unencrypted (still a 0600 file), so a node can start unattended.
    #[arg(long, conflicts_with_all = ["hotkey_password_file", "hotkey_password_env"], help_heading = HOTKEY_PASSWORD)]
    no_hotkey_password: bool,
    /// Read the hotkey's password from this file (use a different password from the coldkey's).
    #[arg(long, value_name = "PATH", conflicts_with = "hotkey_password_env", help_heading = HOTKEY_PASSWORD)]
    hotkey_password_file: Option<PathBuf>,
    /// Read the hotkey's password from the environment variable of this name.
    #[arg(long, value_name = "VAR", help_heading = HOTKEY_PASSWORD)]
    hotkey_password_env: Option<String>,
    #[command(flatten)]
    kdf: KdfArgs,
    #[command(flatten, next_help_heading = "Location")]
    path: WalletPath,
}

#[derive(Debug, Args)]
pub struct NewHotkeyArgs {
    /// Wallet to add the hotkey to.
    #[arg(long, short = 'n', value_name = "NAME")]
    name: String,
    /// Name of the new hotkey.
    #[arg(long, value_name = "NAME", default_value = "default")]
    hotkey: String,
    /// Length of the backup phrase.
    #[arg(long, value_enum, default_value = "12")]
    words: Words,
    /// Store the hotkey unencrypted (still a 0600 file), so a node can start unattended.
    #[arg(long, conflicts_with_all = ["password_file", "password_env"])]
    no_password: bool,
    /// Replace an existing hotkey of the same name.
    #[arg(long)]
    overwrite: bool,
    /// Print the result as JSON (phrase included) instead of text.
    #[arg(long)]
    json: bool,
    #[command(
        flatten,
        next_help_heading = "Hotkey password (asked on the terminal if neither is given)"
    )]
    password: PasswordArgs,
    #[command(flatten)]
    kdf: KdfArgs,
    #[command(flatten, next_help_heading = "Location")]
    path: WalletPath,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten, next_help_heading = "Location")]
    path: WalletPath,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Wallet to show.
    #[arg(long, short = 'n', value_name = "NAME")]
    name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten, next_help_heading = "Location")]
    path: WalletPath,
}

/// Which key to restore.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Which {
    /// The wallet's coldkey (always stored encrypted).
    Coldkey,
    /// A hotkey (named with --hotkey).
    Hotkey,
}

#[derive(Debug, Args)]
pub struct RegenArgs {
    /// Which key the phrase is for.
    #[arg(value_enum)]
    which: Which,
    /// Wallet to restore into (created if missing).
    #[arg(long, short = 'n', value_name = "NAME")]
    name: String,
    /// Name of the hotkey to restore.
    #[arg(long, value_name = "NAME", default_value = "default")]
    hotkey: String,
    /// The backup phrase. Visible to other users in the process list and kept in shell history:
    /// prefer --mnemonic-file, or neither flag to type it at a hidden prompt.
    #[arg(long, value_name = "WORDS", conflicts_with = "mnemonic_file")]
    mnemonic: Option<String>,
    /// Read the backup phrase from this file.
    #[arg(long, value_name = "PATH")]
    mnemonic_file: Option<PathBuf>,
    /// Store a restored hotkey unencrypted (still a 0600 file).
    #[arg(long, conflicts_with_all = ["password_file", "password_env"])]
    no_password: bool,
    /// Replace an existing key of the same name.
    #[arg(long)]
    overwrite: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(
        flatten,
        next_help_heading = "Password of the restored key (asked on the terminal if neither is given)"
    )]
    password: PasswordArgs,
    #[command(flatten)]
    kdf: KdfArgs,
    #[command(flatten, next_help_heading = "Location")]
    path: WalletPath,
}

/// The message to sign or verify.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct MessageArgs {
    /// The message, as UTF-8 text.
    #[arg(long, value_name = "TEXT")]
    message: Option<String>,
    /// Read the message from this file, byte for byte (`-` reads standard input).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

impl MessageArgs {
    fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        match (&self.message, &self.file) {
            (Some(text), _) => Ok(text.as_bytes().to_vec()),
            (None, Some(path)) if path == Path::new("-") => {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .context("reading the message from standard input")?;
                Ok(bytes)
            }
            (None, Some(path)) => std::fs::read(path)
                .with_context(|| format!("reading the message from {}", path.display())),
            (None, None) => bail!("give the message with --message or --file"),
        }
    }
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Wallet whose key signs.
    #[arg(long, short = 'n', value_name = "NAME")]
    name: String,
    /// Hotkey that signs.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "default",
        conflicts_with = "coldkey"
    )]
    hotkey: String,
    /// Sign with the coldkey instead of a hotkey.
    #[arg(long)]
    coldkey: bool,
    #[command(flatten)]
    message: MessageArgs,
    #[command(
        flatten,
        next_help_heading = "Password of the key, if encrypted (asked on the terminal if neither is given)"
    )]
    password: PasswordArgs,
    #[command(flatten, next_help_heading = "Location")]
    path: WalletPath,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Public key of the signer (64 hex digits), as printed by `agora wallet show`.
    #[arg(long, value_name = "HEX")]
    key: String,
    /// The signature (128 hex digits), as printed by `agora wallet sign`.
    #[arg(long, value_name = "HEX")]
    signature: String,
    #[command(flatten)]
    message: MessageArgs,
}

/// Runs one `agora wallet` subcommand.
pub fn run(cmd: WalletCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WalletCommand::New(args) => new(args),
        WalletCommand::NewHotkey(args) => new_hotkey(args),
        WalletCommand::List(args) => list(args),
        WalletCommand::Show(args) => show(args),
        WalletCommand::Regen(args) => regen(args),
        WalletCommand::Sign(args) => sign(args),
        WalletCommand::Verify(args) => verify(args),
    }
}

const BACKUP_WARNING: &str = "Write the backup phrases down now and keep them offline. They are shown only this once,\n\
     they are the only way to restore a lost key, and anyone who reads one controls its key.";

fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let wallet = args.path.wallet(&args.name)?;
    let overwrite = overwrite(args.overwrite);
    // Check names and existing keys before asking for any password.
    if !args.no_hotkey {
        wallet.hotkey_path(&args.hotkey)?;
    }
    if overwrite == Overwrite::Refuse {
        if wallet.has_coldkey() {
            return Err(explain(WalletError::AlreadyExists {
                path: wallet.coldkey_path(),
            }));
        }
        if !args.no_hotkey && wallet.has_hotkey(&args.hotkey)? {
            return Err(explain(WalletError::AlreadyExists {
                path: wallet.hotkey_path(&args.hotkey)?,
            }));
        }
    }
    let kdf = args.kdf.params();
    let cold_password = new_password(&args.password, "coldkey")?;
    let hot_password = if args.no_hotkey || args.no_hotkey_password {
        None
    } else {
        let source = PasswordArgs {
            password_file: args.hotkey_password_file.clone(),
            password_env: args.hotkey_password_env.clone(),
        };
        Some(new_password(&source, "hotkey").context(
            "the hotkey needs its own password (--hotkey-password-file, --hotkey-password-env), \
             or --no-hotkey-password to store it unencrypted",
        )?)
    };
    if let Some(hot) = &hot_password
        && hot.as_bytes() == cold_password.as_bytes()
    {
        eprintln!(
            "warning: the hotkey and coldkey passwords are the same; a server that holds the hotkey's password can then open the coldkey"
        );
    }

    let cold = wallet
        .create_coldkey(args.words.into(), &cold_password, kdf, overwrite)
        .map_err(explain)?;
    let hot = if args.no_hotkey {
        None
    } else {
        let protection = protection(hot_password.as_ref(), kdf);
        let key = wallet
            .create_hotkey(&args.hotkey, args.words.into(), protection, overwrite)
            .map_err(explain)?;
        Some(key)
    };

    if args.json {
        let mut out = json!({
            "wallet": wallet.name(),
            "path": wallet.dir(),
            "coldkey": { "public_key": cold.public.to_hex(), "mnemonic": cold.mnemonic.phrase().as_str() },
        });
        if let Some(hot) = &hot {
            out["hotkey"] = json!({
                "name": args.hotkey,
                "public_key": hot.public.to_hex(),
                "peer_id": agora_wallet::peer_id(&hot.public)?.to_string(),
                "encrypted": hot_password.is_some(),
                "mnemonic": hot.mnemonic.phrase().as_str(),
            });
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        eprintln!("{BACKUP_WARNING}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Created wallet {:?} in {}",
        wallet.name(),
        wallet.dir().display()
    );
    println!("  coldkey             {}", cold.public);
    if let Some(hot) = &hot {
        println!("  hotkey {:<12} {}", args.hotkey, hot.public);
        println!(
            "  peer id             {}",
            agora_wallet::peer_id(&hot.public)?
        );
    }
    println!();
    println!("{BACKUP_WARNING}");
    println!();
    println!("  coldkey phrase: {}", cold.mnemonic.phrase().as_str());
    if let Some(hot) = &hot {
        println!(
            "  hotkey {:?} phrase: {}",
            args.hotkey,
            hot.mnemonic.phrase().as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn new_hotkey(args: NewHotkeyArgs) -> anyhow::Result<ExitCode> {
    let wallet = args.path.wallet(&args.name)?;
    let overwrite = overwrite(args.overwrite);
    if overwrite == Overwrite::Refuse && wallet.has_hotkey(&args.hotkey)? {
        return Err(explain(WalletError::AlreadyExists {
            path: wallet.hotkey_path(&args.hotkey)?,
        }));
    }
    if !wallet.exists() {
        bail!(
            "no wallet {:?} in {}: create it with `agora wallet new --name {}`",
            wallet.name(),
            wallet.dir().parent().unwrap_or(wallet.dir()).display(),
            wallet.name()
        );
    }
    let kdf = args.kdf.params();
    let password = if args.no_password {
        None
    } else {
        Some(new_password(&args.password, "hotkey")?)
    };
    let hot = wallet
        .create_hotkey(
            &args.hotkey,
            args.words.into(),
            protection(password.as_ref(), kdf),
            overwrite,
        )
        .map_err(explain)?;
    let peer = agora_wallet::peer_id(&hot.public)?;
    if args.json {
        let out = json!({
            "wallet": wallet.name(),
            "hotkey": {
                "name": args.hotkey,
                "public_key": hot.public.to_hex(),
                "peer_id": peer.to_string(),
                "encrypted": password.is_some(),
                "mnemonic": hot.mnemonic.phrase().as_str(),
            }
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        eprintln!("{BACKUP_WARNING}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Created hotkey {:?} in wallet {:?}",
        args.hotkey,
        wallet.name()
    );
    println!("  public key  {}", hot.public);
    println!("  peer id     {peer}");
    println!();
    println!("{BACKUP_WARNING}");
    println!();
    println!(
        "  hotkey {:?} phrase: {}",
        args.hotkey,
        hot.mnemonic.phrase().as_str()
    );
    Ok(ExitCode::SUCCESS)
}

/// What `show` and `list` report about one key; errors are reported per key so that one damaged file
/// does not hide the others.
///
/// The keyfile is the authority on the public key (it is bound into the encryption); a public key
/// file that disagrees with it is flagged, since someone reading it would be misled.
fn key_json(
    file: Result<agora_wallet::Keyfile, WalletError>,
    pub_file: Result<PublicKey, WalletError>,
    hotkey: bool,
) -> serde_json::Value {
    let mut out = key_json_inner(file.as_ref(), hotkey);
    if let Ok(file) = &file {
        match pub_file {
            Ok(public) if public == file.public() => {}
            Ok(public) => {
                out["warning"] = json!(format!(
                    "the public key file says {public}, the keyfile says {}; trust the keyfile",
                    file.public()
                ))
            }
            Err(err) => out["warning"] = json!(format!("public key file: {err}")),
        }
    }
    out
}

fn key_json_inner(
    file: Result<&agora_wallet::Keyfile, &WalletError>,
    hotkey: bool,
) -> serde_json::Value {
    match file {
        Err(err) => json!({ "error": err.to_string() }),
        Ok(file) => {
            let mut out = json!({
                "public_key": file.public().to_hex(),
                "encrypted": file.is_encrypted(),
            });
            if let Some(kdf) = file.kdf_params() {
                out["kdf"] = json!({
                    "name": "argon2id",
                    "m_cost_kib": kdf.m_cost_kib,
                    "t_cost": kdf.t_cost,
                    "p_cost": kdf.p_cost,
                });
            }
            if hotkey {
                match agora_wallet::peer_id(&file.public()) {
                    Ok(peer) => out["peer_id"] = json!(peer.to_string()),
                    Err(err) => out["error"] = json!(err.to_string()),
                }
            }
            out
        }
    }
}

fn wallet_json(wallet: &Wallet) -> anyhow::Result<serde_json::Value> {
    let coldkey = if wallet.has_coldkey() {
        key_json(
            wallet.coldkey_file(),
            wallet.coldkey_public_from_pub_file(),
            false,
        )
    } else {
        serde_json::Value::Null
    };
    let mut hotkeys = serde_json::Map::new();
    for name in wallet.hotkey_names()? {
        let public = wallet.hotkey_public_from_pub_file(&name);
        hotkeys.insert(
            name.clone(),
            key_json(wallet.hotkey_file(&name), public, true),
        );
    }
    Ok(json!({
        "name": wallet.name(),
        "path": wallet.dir(),
        "coldkey": coldkey,
        "hotkeys": hotkeys,
    }))
}

fn print_wallet(info: &serde_json::Value) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    println!("{}  ({})", text(&info["name"]), text(&info["path"]));
    let protection = |key: &serde_json::Value| match (key["encrypted"].as_bool(), &key["kdf"]) {
        (Some(true), kdf) if kdf.is_object() => {
            let kib = kdf["m_cost_kib"].as_u64().unwrap_or(0);
            let memory = if kib >= 1024 && kib % 1024 == 0 {
                format!("{} MiB", kib / 1024)
            } else {
                format!("{kib} KiB")
            };
            format!(
                "encrypted, argon2id {memory} t={} p={}",
                kdf["t_cost"], kdf["p_cost"]
            )
        }
        (Some(true), _) => "encrypted".into(),
        _ => "unencrypted".into(),
    };
    let cold = &info["coldkey"];
    if cold.is_null() {
        println!("  coldkey            (none)");
    } else if cold["error"].is_string() {
        println!("  coldkey            error: {}", text(&cold["error"]));
    } else {
        println!(
            "  coldkey            {}  ({})",
            text(&cold["public_key"]),
            protection(cold)
        );
        if cold["warning"].is_string() {
            println!("    warning          {}", text(&cold["warning"]));
        }
    }
    if let Some(hotkeys) = info["hotkeys"].as_object() {
        if hotkeys.is_empty() {
            println!("  hotkeys            (none)");
        }
        for (name, hot) in hotkeys {
            if hot["error"].is_string() {
                println!("  hotkey {name:<11} error: {}", text(&hot["error"]));
            } else {
                println!(
                    "  hotkey {name:<11} {}  ({})",
                    text(&hot["public_key"]),
                    protection(hot)
                );
                println!("    peer id          {}", text(&hot["peer_id"]));
                if hot["warning"].is_string() {
                    println!("    warning          {}", text(&hot["warning"]));
                }
            }
        }
    }
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let root = args.path.root()?;
    let names = agora_wallet::list_wallets(&root)?;
    let mut wallets = Vec::new();
    for name in &names {
        wallets.push(wallet_json(&Wallet::new(&root, name)?)?);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "path": root, "wallets": wallets }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if wallets.is_empty() {
        eprintln!(
            "No wallets in {}. Create one with `agora wallet new --name NAME`.",
            root.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (i, info) in wallets.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_wallet(info);
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let wallet = args.path.wallet(&args.name)?;
    if !wallet.exists() {
        return Err(explain(WalletError::NotFound {
            what: format!("wallet {:?}", wallet.name()),
            path: wallet.dir().into(),
        }));
    }
    let info = wallet_json(&wallet)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print_wallet(&info);
    }
    Ok(ExitCode::SUCCESS)
}

fn regen(args: RegenArgs) -> anyhow::Result<ExitCode> {
    let wallet = args.path.wallet(&args.name)?;
    let overwrite = overwrite(args.overwrite);
    let (path, what) = match args.which {
        Which::Coldkey => (wallet.coldkey_path(), "coldkey"),
        Which::Hotkey => (wallet.hotkey_path(&args.hotkey)?, "hotkey"),
    };
    if matches!(args.which, Which::Coldkey) && args.no_password {
        bail!("a coldkey is always stored encrypted: --no-password applies to hotkeys only");
    }
    if overwrite == Overwrite::Refuse && std::fs::symlink_metadata(&path).is_ok() {
        return Err(explain(WalletError::AlreadyExists { path }));
    }
    let phrase: Zeroizing<String> = match (args.mnemonic, &args.mnemonic_file) {
        (Some(words), _) => Zeroizing::new(words),
        (None, Some(file)) => Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading the phrase from {}", file.display()))?,
        ),
        (None, None) => Zeroizing::new(
            rpassword::prompt_password(format!("Backup phrase of the {what} (input hidden): "))
                .map_err(|e| no_terminal(e, "the backup phrase", "--mnemonic-file"))?,
        ),
    };
    let mnemonic = Mnemonic::parse(&phrase)?;
    let kdf = args.kdf.params();
    let public = match args.which {
        Which::Coldkey => {
            let password = new_password(&args.password, "coldkey")?;
            wallet
                .restore_coldkey(&mnemonic, &password, kdf, overwrite)
                .map_err(explain)?
        }
        Which::Hotkey => {
            let password = if args.no_password {
                None
            } else {
                Some(new_password(&args.password, "hotkey")?)
            };
            wallet
                .restore_hotkey(
                    &args.hotkey,
                    &mnemonic,
                    protection(password.as_ref(), kdf),
                    overwrite,
                )
                .map_err(explain)?
        }
    };
    let peer = match args.which {
        Which::Hotkey => Some(agora_wallet::peer_id(&public)?.to_string()),
        Which::Coldkey => None,
    };
    if args.json {
        let mut out =
            json!({ "wallet": wallet.name(), "key": what, "public_key": public.to_hex() });
        if let Which::Hotkey = args.which {
            out["hotkey"] = json!(args.hotkey);
        }
        if let Some(peer) = &peer {
            out["peer_id"] = json!(peer);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    match args.which {
        Which::Coldkey => println!("Restored the coldkey of wallet {:?}", wallet.name()),
        Which::Hotkey => println!(
            "Restored hotkey {:?} of wallet {:?}",
            args.hotkey,
            wallet.name()
        ),
    }
    println!("  public key  {public}");
    if let Some(peer) = peer {
        println!("  peer id     {peer}");
    }
    Ok(ExitCode::SUCCESS)
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let wallet = args.path.wallet(&args.name)?;
    let message = args.message.bytes()?;
    let (key, label) = if args.coldkey {
        // Read the file first so a missing or damaged key is reported before a password prompt.
        wallet.coldkey_file().map_err(explain)?;
        let password = password(&args.password, "coldkey")?;
        (
            wallet.unlock_coldkey(&password).map_err(explain)?,
            "coldkey".to_string(),
        )
    } else {
        let file = wallet.hotkey_file(&args.hotkey).map_err(explain)?;
        let password = if file.is_encrypted() {
            Some(password(
                &args.password,
                &format!("hotkey {:?}", args.hotkey),
            )?)
        } else {
            None
        };
        let key = wallet
            .unlock_hotkey(&args.hotkey, password.as_ref())
            .map_err(explain)?;
        (key, format!("hotkey {:?}", args.hotkey))
    };
    let signature = agora_wallet::sign_message(&key, &message);
    eprintln!(
        "signed {} bytes with {label} {}",
        message.len(),
        key.public()
    );
    println!("{}", signature.to_hex());
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = PublicKey::from_hex(&args.key).map_err(|e| anyhow!("--key: {e}"))?;
    let signature = Signature::from_hex(&args.signature)
        .map_err(|_| anyhow!("--signature: a signature is 64 bytes (128 hex digits)"))?;
    let message = args.message.bytes()?;
    if agora_wallet::verify_message(&key, &message, &signature) {
        println!("valid: signed by {key}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("invalid: this signature was not made by {key} over this message");
        Ok(ExitCode::FAILURE)
    }
}

fn overwrite(flag: bool) -> Overwrite {
    if flag {
        Overwrite::Allow
    } else {
        Overwrite::Refuse
    }
}

fn protection(password: Option<&Password>, kdf: KdfParams) -> Protection<'_> {
    match password {
        Some(password) => Protection::Encrypted { password, kdf },
        None => Protection::Plaintext,
    }
}

/// The password of an existing key: from the file or variable named, else asked once.
pub(crate) fn password(args: &PasswordArgs, what: &str) -> anyhow::Result<Password> {
    if let Some(password) = password_from_flags(args)? {
        return Ok(password);
    }
    let typed = rpassword::prompt_password(format!("Password of the {what}: "))
        .map_err(|e| no_terminal(e, "a password", "--password-file or --password-env"))?;
    Ok(Password::from_string(typed))
}

/// The password of a new key: from the file or variable named, else asked twice.
fn new_password(args: &PasswordArgs, what: &str) -> anyhow::Result<Password> {
    let password = match password_from_flags(args)? {
        Some(password) => password,
        None => {
            let first = Password::from_string(
                rpassword::prompt_password(format!("New password for the {what}: ")).map_err(
                    |e| no_terminal(e, "a password", "--password-file or --password-env"),
                )?,
            );
            let second = Password::from_string(
                rpassword::prompt_password(format!("Repeat the {what} password: ")).map_err(
                    |e| no_terminal(e, "a password", "--password-file or --password-env"),
                )?,
            );
            if first.as_bytes() != second.as_bytes() {
                bail!("the two passwords differ; nothing was written");
            }
            first
        }
    };
    password
        .check_strength()
        .with_context(|| format!("the {what} password"))?;
    Ok(password)
}

fn password_from_flags(args: &PasswordArgs) -> anyhow::Result<Option<Password>> {
    if let Some(path) = &args.password_file {
        warn_if_shared(path);
        return Ok(Some(Password::from_file(path)?));
    }
    if let Some(var) = &args.password_env {
        return Ok(Some(Password::from_env(var)?));
    }
    Ok(None)
}

/// A password file others can read exposes the key it protects; say so, but go on (containers often
/// mount secrets read-only for all).
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: password file {} has permissions {mode:04o}; other users may read it (chmod 600)",
                path.display()
            );
        }
    }
}

fn no_terminal(err: std::io::Error, what: &str, flags: &str) -> anyhow::Error {
    anyhow!("cannot ask for {what} on the terminal ({err}); give it with {flags}")
}

/// Adds what to do next to the errors a user can act on.
fn explain(err: WalletError) -> anyhow::Error {
    let hint = match &err {
        WalletError::AlreadyExists { .. } => Some(
            "pass --overwrite to replace it (the old key is then lost unless you have its backup phrase)",
        ),
        WalletError::NotFound { .. } => {
            Some("create it with `agora wallet new`, or restore it with `agora wallet regen`")
        }
        WalletError::Keyfile {
            source: KeyfileError::WrongPassword,
            ..
        } => Some(
            "nothing was changed; try again, or restore the key from its phrase with `agora wallet regen`",
        ),
        WalletError::Keyfile {
            source: KeyfileError::Tampered | KeyfileError::Corrupt(_) | KeyfileError::KeyMismatch,
            ..
        } => Some(
            "the file was left as it is; restore the key from its backup phrase with `agora wallet regen --overwrite`",
        ),
        _ => None,
    };
    match hint {
        Some(hint) => anyhow!("{err}\n  hint: {hint}"),
        None => anyhow::Error::new(err),
    }
}
