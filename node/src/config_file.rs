//! Decoding the operator's TOML configuration file: the text, its tables and keys, and each value
//! as the text a flag would carry, checked with that flag's own parser.
//!
//! The `agora` command (`src/cli/config.rs`) layers the file under the environment and the flags;
//! what it reads from the file goes through here, a library, so that the fuzz targets
//! (`fuzz/targets`, target `config`) reach the same code. The file is local and written by the
//! operator, but it may be copied from elsewhere, and a decoder of file input must give errors,
//! never panics.
//!
//! What the file may hold is decided by the command line itself: the shared tables and their keys
//! are listed here ([`SHARED`]); each command's own table accepts that command's configurable
//! flags, which only the command knows, so [`ConfigTables::check`] takes them as a function.

use clap::{Arg, ArgAction, Command};

/// Largest config file read: a config is a few hundred bytes; anything near this is a mistake
/// (a wrong path), and reading it whole must stay cheap.
pub const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// Commands that read the config file: the long-running peers and the commands that talk to them.
/// Others (wallet, ledger, transfer, ...) act once on what their flags say, and a broken config
/// file must never stop an operator from using them to repair things.
pub const COMMANDS: &[&str] = &[
    "node",
    "serve",
    "validate",
    "query",
    "gateway",
    "peers",
    "providers",
];

/// The shared tables, in the order `config show` and the docs list them.
pub const SHARED_TABLES: &[&str] = &["mesh", "wallet", "ledger", "client"];

/// A key of a shared table: which argument (by clap id, and long name where ids are reused by
/// unrelated arguments) it sets in every command that has that argument.
#[derive(Debug)]
pub struct SharedKey {
    /// The table.
    pub table: &'static str,
    /// The key in it.
    pub key: &'static str,
    /// The clap id of the argument it sets.
    pub id: &'static str,
    /// The argument's long flag must be this one (None: any, e.g. the gateway's `--p2p-listen`).
    pub long: Option<&'static str>,
}

const fn shared(
    table: &'static str,
    key: &'static str,
    id: &'static str,
    long: Option<&'static str>,
) -> SharedKey {
    SharedKey {
        table,
        key,
        id,
        long,
    }
}

/// Every shared key. The argument structs that carry them (`MeshArgs`, `KeyArgs`, `LedgerPaths`,
/// `ClientArgs`) are flattened into several commands; this is where their table is decided.
pub const SHARED: &[SharedKey] = &[
    shared("mesh", "bootstrap", "bootstrap", Some("bootstrap")),
    shared("mesh", "listen", "listen", None),
    shared("mesh", "kad-server", "kad_server", Some("kad-server")),
    shared("mesh", "loopback", "loopback", Some("loopback")),
    shared("mesh", "relay", "relay", Some("relay")),
    shared("mesh", "subnet", "subnets", Some("subnet")),
    shared("wallet", "wallet", "wallet", Some("wallet")),
    shared("wallet", "hotkey", "hotkey", Some("hotkey")),
    shared("wallet", "wallet-path", "wallet_path", Some("wallet-path")),
    shared(
        "wallet",
        "password-file",
        "password_file",
        Some("password-file"),
    ),
    shared(
        "wallet",
        "password-env",
        "password_env",
        Some("password-env"),
    ),
    shared("ledger", "ledger-log", "log", Some("ledger-log")),
    shared(
        "ledger",
        "ledger-genesis",
        "genesis",
        Some("ledger-genesis"),
    ),
    shared("ledger", "chain-rpc", "chain_rpc", Some("chain-rpc")),
    shared(
        "ledger",
        "chain-contract",
        "chain_contract",
        Some("chain-contract"),
    ),
    shared(
        "ledger",
        "chain-start-block",
        "chain_start_block",
        Some("chain-start-block"),
    ),
    shared("ledger", "chain-depth", "chain_depth", Some("chain-depth")),
    shared("ledger", "chain-id", "chain_id", Some("chain-id")),
    shared("ledger", "chain-key", "chain_key", Some("chain-key")),
    shared("client", "max-price", "max_price", Some("max-price")),
    shared("client", "deadline-ms", "deadline_ms", Some("deadline-ms")),
    shared("client", "attempts", "attempts", Some("attempts")),
    shared("client", "mode", "mode", Some("mode")),
];

/// Why a config file, or a value in it, was refused. The messages name no file: the caller puts
/// the file (and for a value, its table and key) in front.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The text is longer than [`MAX_CONFIG_LEN`].
    #[error("{len} bytes, over the limit of {MAX_CONFIG_LEN}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The text is not TOML.
    #[error("not valid TOML: {0}")]
    Toml(String),
    /// A top-level key holds a value, not a table.
    #[error(
        "`{name}` is not a table: every setting belongs to a table such as [mesh] or [serve]; \
         tables: {}",
        table_names().join(", ")
    )]
    NotATable {
        /// The key.
        name: String,
    },
    /// A table nobody reads.
    #[error("unknown table [{name}]; tables: {}", table_names().join(", "))]
    UnknownTable {
        /// The table.
        name: String,
    },
    /// A key its table does not have.
    #[error("unknown key `{key}` in [{table}]; keys of [{table}]: {}", keys.join(", "))]
    UnknownKey {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// What the table accepts.
        keys: Vec<String>,
    },
    /// A list where the flag takes one value.
    #[error("takes one value, not a list")]
    NotAList,
    /// A list holding something that is not a value (a table, a list, a date).
    #[error("the list holds a {0}")]
    ListHolds(&'static str),
    /// Something that is not a value (a table, a date).
    #[error("a {0} is not a value for this key")]
    NotAValue(&'static str),
    /// The flag's own parser refused the value; its message, as clap words it.
    #[error("{0}")]
    BadValue(String),
}

/// Every table a config file may hold.
pub fn table_names() -> Vec<&'static str> {
    SHARED_TABLES.iter().chain(COMMANDS).copied().collect()
}

/// The keys of shared table `table`, or None if it is not one.
pub fn shared_keys(table: &str) -> Option<Vec<String>> {
    SHARED_TABLES.contains(&table).then(|| {
        SHARED
            .iter()
            .filter(|k| k.table == table)
            .map(|k| k.key.to_string())
            .collect()
    })
}

/// A config file's text, parsed: tables of keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigTables {
    tables: toml::Table,
}

impl ConfigTables {
    /// Parses the text of a config file (at most [`MAX_CONFIG_LEN`] bytes). Its tables and keys
    /// are checked by [`ConfigTables::check`], its values by [`values`].
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.len() as u64 > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLarge { len: text.len() });
        }
        let tables: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml(e.to_string()))?;
        Ok(Self { tables })
    }

    /// Checks every table and key: each top-level entry must be a table that `valid_keys` knows
    /// (it gives the keys a table accepts, or None for no such table), and each key one of those.
    pub fn check(
        &self,
        valid_keys: impl Fn(&str) -> Option<Vec<String>>,
    ) -> Result<(), ConfigError> {
        for (name, value) in &self.tables {
            let Some(table) = value.as_table() else {
                return Err(ConfigError::NotATable { name: name.clone() });
            };
            let valid =
                valid_keys(name).ok_or_else(|| ConfigError::UnknownTable { name: name.clone() })?;
            if let Some(key) = table.keys().find(|key| !valid.contains(key)) {
                return Err(ConfigError::UnknownKey {
                    table: name.clone(),
                    key: key.clone(),
                    keys: valid,
                });
            }
        }
        Ok(())
    }

    /// The value of `key` in `table`, if the file sets it.
    pub fn get(&self, table: &str, key: &str) -> Option<&toml::Value> {
        self.tables.get(table)?.as_table()?.get(key)
    }

    /// Every (table, key, value) the file sets, tables and keys in order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &toml::Value)> {
        self.tables.iter().flat_map(|(name, value)| {
            value.as_table().into_iter().flat_map(move |table| {
                table
                    .iter()
                    .map(move |(key, value)| (name.as_str(), key.as_str(), value))
            })
        })
    }
}

/// A TOML scalar as the text a flag would carry.
pub fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The value(s) of one key as the command line would carry them for `arg` (a list only where
/// the flag takes several), each checked with the flag's own parser.
pub fn values(value: &toml::Value, arg: &Arg) -> Result<Vec<String>, ConfigError> {
    let values = match value {
        toml::Value::Array(items) if is_list(arg) => items
            .iter()
            .map(|v| scalar(v).ok_or(ConfigError::ListHolds(v.type_str())))
            .collect::<Result<Vec<_>, _>>()?,
        toml::Value::Array(_) => return Err(ConfigError::NotAList),
        other => vec![scalar(other).ok_or(ConfigError::NotAValue(other.type_str()))?],
    };
    for value in &values {
        check_value(arg, value).map_err(ConfigError::BadValue)?;
    }
    Ok(values)
}

/// Whether `arg` takes several values (so the file may give a list).
pub fn is_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// Parses `value` with `arg`'s own value parser, by parsing it as that flag on a one-argument
/// command: the error is the one clap gives for the flag on the command line.
pub fn check_value(arg: &Arg, value: &str) -> Result<(), String> {
    let long = arg.get_long().unwrap_or("value").to_string();
    let mut probe = Arg::new(arg.get_id().clone())
        .long(long.clone())
        .action(ArgAction::Set)
        .value_parser(arg.get_value_parser().clone())
        .ignore_case(arg.is_ignore_case_set())
        .allow_hyphen_values(true);
    if let Some(names) = arg.get_value_names() {
        probe = probe.value_names(names.iter().cloned());
    }
    let cmd = Command::new("agora")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(probe);
    match cmd.try_get_matches_from([format!("--{long}"), value.to_string()]) {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.render().to_string();
            let text = text.trim_start_matches("error: ");
            let text = text
                .split("\n\nFor more information")
                .next()
                .unwrap_or(text);
            Err(text.trim_end().to_string())
        }
    }
}
