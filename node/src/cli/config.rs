//! The operator's configuration: built-in defaults, then a TOML file, then environment variables,
//! then flags, each layer overriding the one before (docs/configuration.md).
//!
//! clap does the layering itself. Before the command line is parsed, every value the file sets for
//! the chosen command is installed as that argument's clap *default*; clap already ranks a flag
//! over its environment variable over its default, so one mechanism applies the same precedence to
//! every argument, and nothing downstream needs to know where a value came from. File values are
//! first checked with the argument's own value parser, so a bad value in the file is reported in
//! the words clap uses for a bad flag, with the file and table in front.
//!
//! The file is `--config PATH`, else `$AGORA_CONFIG`, else `~/.agora/config.toml` when it exists.
//! Shared tables (`[mesh]`, `[wallet]`, `[ledger]`, `[client]`) hold what several commands share;
//! one table per command (`[serve]`, `[validate]`, ...) holds the rest and may also set a shared
//! key for that command alone (it wins over the shared table). Keys are the flags' long names.
//! Every configurable argument reads an environment variable: `AGORA_<KEY>` for a shared key,
//! `AGORA_<COMMAND>_<KEY>` otherwise (names that existed before the file are kept).

use anyhow::{Context, anyhow, bail};
use clap::builder::{BoolishValueParser, PossibleValuesParser, Resettable};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, CommandFactory, FromArgMatches, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use agora::config_file::{COMMANDS, MAX_CONFIG_LEN};
use agora::config_file::{ConfigError, ConfigTables, SHARED, SharedKey, is_list, shared_keys};

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "AGORA_CONFIG";

/// Arguments that describe one run rather than a setup: never read from the file or the
/// environment. `--ephemeral-key` is among them because it conflicts with `--wallet`, and a file
/// value (a clap default) cannot take part in clap's conflict checks: a `--wallet` flag would
/// silently lose to `ephemeral-key = true` in the file.
const PER_RUN: &[(&str, &str)] = &[
    ("query", "task"),
    ("query", "inputs"),
    ("query", "system"),
    ("*", "ephemeral_key"),
];

/// Where the config file's path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--config PATH`.
    Flag,
    /// `$AGORA_CONFIG`.
    Env,
    /// `~/.agora/config.toml`.
    Default,
}

impl Origin {
    fn describe(self) -> &'static str {
        match self {
            Origin::Flag => "from --config",
            Origin::Env => "from AGORA_CONFIG",
            Origin::Default => "the default location",
        }
    }
}

/// `agora config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML, every value with where it came from (flag, env,
    /// file or default). The output is itself a valid config file.
    Show(ShowArgs),
    /// Print the path of the config file in use (on stderr: where the path came from, and whether
    /// the file exists).
    Path,
}

/// `agora config show [COMMAND [FLAGS...]]`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The command whose configuration to show [default: every command that reads the file].
    #[arg(value_parser = PossibleValuesParser::new(COMMANDS))]
    pub command: Option<String>,
    /// Flags for that command, as you would give them to it: they show as `flag`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        requires = "command",
        value_name = "FLAGS"
    )]
    pub args: Vec<OsString>,
}

/// `agora completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Whether `arg` of subcommand `command` can be set by the file and the environment.
fn configurable(command: &str, arg: &Arg) -> bool {
    let id = arg.get_id().as_str();
    let meta = matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    );
    !meta
        && !arg.is_hide_set()
        && !arg.is_global_set()
        && arg.get_long().is_some()
        && id != "config"
        && id != "verbose"
        && !PER_RUN
            .iter()
            .any(|(c, i)| (*c == "*" || *c == command) && *i == id)
}

/// The shared key `arg` sets, if it is one.
fn shared_key(arg: &Arg) -> Option<&'static SharedKey> {
    SHARED.iter().find(|k| {
        k.id == arg.get_id().as_str() && k.long.is_none_or(|long| arg.get_long() == Some(long))
    })
}

/// The key of `arg` in its command's table: its long flag name.
fn command_key(arg: &Arg) -> String {
    arg.get_long().unwrap_or_default().to_string()
}

/// The environment variable `arg` reads when it does not already name one.
fn env_name(command: &str, arg: &Arg) -> String {
    let key = match shared_key(arg) {
        Some(shared) => shared.key.to_string(),
        None => format!("{command}-{}", command_key(arg)),
    };
    format!("AGORA_{}", key.replace('-', "_").to_uppercase())
}

/// Whether `arg` is an on/off switch.
fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// The configurable arguments of `sub`, in the order they were declared.
fn configurable_args<'a>(name: &'a str, sub: &'a Command) -> impl Iterator<Item = &'a Arg> + 'a {
    sub.get_arguments().filter(move |a| configurable(name, a))
}

/// Gives every configurable argument an environment variable (keeping names already declared),
/// lets switches read `1`/`yes`/`on` from it, and lets lists read comma-separated values.
pub fn with_env(cmd: Command) -> Command {
    COMMANDS.iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(name, |sub| {
            let changes: Vec<(String, Option<String>, bool, bool)> = configurable_args(name, &sub)
                .map(|a| {
                    let env = a.get_env().is_none().then(|| env_name(name, a));
                    (a.get_id().to_string(), env, is_switch(a), is_list(a))
                })
                .collect();
            changes
                .into_iter()
                .fold(sub, |sub, (id, env, switch, list)| {
                    sub.mut_arg(id, |mut a| {
                        if let Some(env) = env {
                            a = a.env(env);
                        }
                        if switch {
                            a = a.value_parser(BoolishValueParser::new());
                        }
                        if list && a.get_value_delimiter().is_none() {
                            a = a.value_delimiter(',');
                        }
                        a
                    })
                })
        })
    })
}

/// The root command as `agora` parses it: the derive's definition plus the environment variables.
pub fn command() -> Command {
    with_env(super::Cli::command())
}

/// A parsed config file.
#[derive(Debug)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// How that path was chosen.
    pub origin: Origin,
    tables: ConfigTables,
}

/// A value installed from the file: which argument, and the table it was read from.
#[derive(Debug, Clone)]
pub struct FromFile {
    /// The clap id of the argument.
    pub id: String,
    /// The table that set it (`mesh`, `serve`, ...).
    pub table: String,
}

/// The first subcommand named on the command line, skipping the root's own options.
fn subcommand_name(argv: &[OsString]) -> Option<String> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_str()?;
        if text == "--" {
            return None;
        }
        if text == "--config" {
            args.next();
            continue;
        }
        if text.starts_with('-') {
            continue;
        }
        return Some(text.to_string());
    }
    None
}

/// The value of `--config` on the command line, if any (before a `--`).
fn config_flag(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    let mut found = None;
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            found = args.next().map(PathBuf::from);
        } else if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            found = Some(PathBuf::from(path));
        }
    }
    found
}

/// `~/.agora/config.toml`.
pub fn default_path() -> anyhow::Result<PathBuf> {
    Ok(dirs::home_dir()
        .context("no home directory: give --config PATH or set AGORA_CONFIG")?
        .join(".agora")
        .join("config.toml"))
}

/// Which config file applies: `--config`, then `$AGORA_CONFIG`, then the default location.
pub fn locate(argv: &[OsString]) -> anyhow::Result<(PathBuf, Origin)> {
    if let Some(path) = config_flag(argv) {
        return Ok((path, Origin::Flag));
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(path), Origin::Env));
    }
    Ok((default_path()?, Origin::Default))
}

impl ConfigFile {
    /// Finds and reads the config file. A file named by `--config` or `AGORA_CONFIG` must exist;
    /// the default one is optional.
    pub fn find(argv: &[OsString]) -> anyhow::Result<Option<ConfigFile>> {
        let (path, origin) = locate(argv)?;
        if origin == Origin::Default && !path.exists() {
            return Ok(None);
        }
        Self::read(&path, origin).map(Some)
    }

    /// Reads and parses `path` (size-limited); the keys are checked by [`ConfigFile::check`].
    pub fn read(path: &Path, origin: Origin) -> anyhow::Result<ConfigFile> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        if meta.len() > MAX_CONFIG_LEN {
            bail!(
                "the config file {} is {} bytes, over the limit of {MAX_CONFIG_LEN}",
                path.display(),
                meta.len()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        let tables = ConfigTables::parse(&text).map_err(|e| match e {
            ConfigError::TooLarge { .. } | ConfigError::Toml(_) => {
                anyhow!("the config file {} is {e}", path.display())
            }
            other => anyhow!("{}: {other}", path.display()),
        })?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            origin,
            tables,
        })
    }

    /// Checks every table and key of the file against `cmd` (the root command): an unknown one is
    /// an error naming it, the file, and the keys that table accepts.
    pub fn check(&self, cmd: &Command) -> anyhow::Result<()> {
        self.tables
            .check(|table| valid_keys(cmd, table))
            .map_err(|e| anyhow!("{}: {e}", self.path.display()))
    }

    /// The value of `key` in `table`, if the file sets it.
    fn get(&self, table: &str, key: &str) -> Option<&toml::Value> {
        self.tables.get(table, key)
    }

    /// Installs every value the file sets for subcommand `name` as clap defaults, after checking
    /// each with the argument's own value parser. Returns the command and what came from the file.
    pub fn install(&self, cmd: Command, name: &str) -> anyhow::Result<(Command, Vec<FromFile>)> {
        let sub = cmd
            .find_subcommand(name)
            .ok_or_else(|| anyhow!("no command {name}"))?;
        let mut found: Vec<(FromFile, Vec<String>)> = Vec::new();
        for arg in configurable_args(name, sub) {
            let key = command_key(arg);
            let (table, key, value) = match self.get(name, &key) {
                Some(value) => (name.to_string(), key, value),
                None => match shared_key(arg)
                    .and_then(|k| self.get(k.table, k.key).map(|v| (k.table, k.key, v)))
                {
                    Some((table, key, value)) => (table.to_string(), key.to_string(), value),
                    None => continue,
                },
            };
            let values = self.values(&table, &key, value, arg)?;
            found.push((
                FromFile {
                    id: arg.get_id().to_string(),
                    table,
                },
                values,
            ));
        }
        let from_file: Vec<FromFile> = found.iter().map(|(f, _)| f.clone()).collect();
        let cmd = cmd.mut_subcommand(name, |sub| {
            found.into_iter().fold(sub, |sub, (from, values)| {
                sub.mut_arg(&from.id, |a| {
                    // A value from the file satisfies a required argument; clap counts only
                    // flags and the environment as present, so the requirement is lifted here.
                    a.default_values(values)
                        .required(false)
                        .required_unless_present(Resettable::Reset)
                })
            })
        });
        Ok((cmd, from_file))
    }

    /// The value(s) of one key as clap would see them on the command line, checked with the
    /// argument's parser.
    fn values(
        &self,
        table: &str,
        key: &str,
        value: &toml::Value,
        arg: &Arg,
    ) -> anyhow::Result<Vec<String>> {
        agora::config_file::values(value, arg)
            .map_err(|e| anyhow!("{}: [{table}] {key}: {e}", self.path.display()))
    }
}

/// The keys `table` accepts, or None if there is no such table.
fn valid_keys(cmd: &Command, table: &str) -> Option<Vec<String>> {
    if let Some(keys) = shared_keys(table) {
        return Some(keys);
    }
    let name = COMMANDS.iter().find(|c| **c == table)?;
    let sub = cmd.find_subcommand(name)?;
    Some(configurable_args(name, sub).map(command_key).collect())
}

/// Parses `argv` as `agora` does: the config file's values (for the chosen command) installed
/// under the flags and the environment. Usage errors print and exit like clap's own.
pub fn parse(argv: Vec<OsString>) -> anyhow::Result<super::Cli> {
    let mut cmd = command();
    if let Some(name) = subcommand_name(&argv).filter(|n| COMMANDS.contains(&n.as_str()))
        && let Some(file) = ConfigFile::find(&argv)?
    {
        file.check(&cmd)?;
        cmd = file.install(cmd, &name)?.0;
    }
    let mut matches = match cmd.try_get_matches_from_mut(argv) {
        Ok(matches) => matches,
        Err(e) => e.exit(),
    };
    match super::Cli::from_arg_matches_mut(&mut matches) {
        Ok(cli) => Ok(cli),
        Err(e) => e.format(&mut cmd).exit(),
    }
}

/// Runs `agora config ...`.
pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    match command {
        ConfigCommand::Path => {
            let (path, origin) = locate(&argv)?;
            println!("{}", path.display());
            let exists = if path.exists() {
                "exists"
            } else {
                "does not exist"
            };
            eprintln!("({}; {exists})", origin.describe());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Show(args) => {
            let text = match show(&argv, args.command.as_deref(), &args.args) {
                Ok(text) => text,
                Err(err) => {
                    // A bad config file is a usage error here too (exit 2, as in `parse`).
                    eprintln!("error: {err:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `agora completions SHELL`.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "agora", &mut out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The effective configuration of `command` (or of every configurable command) as TOML.
fn show(argv: &[OsString], command: Option<&str>, flags: &[OsString]) -> anyhow::Result<String> {
    let file = ConfigFile::find(argv)?;
    let mut out = String::new();
    out.push_str("# The effective configuration: flag > env > file > default.\n");
    match &file {
        Some(file) => out.push_str(&format!(
            "# Config file: {} ({}).\n",
            file.path.display(),
            file.origin.describe()
        )),
        None => {
            let (path, _) = locate(argv)?;
            out.push_str(&format!(
                "# Config file: none ({} does not exist).\n",
                path.display()
            ));
        }
    }
    let names: Vec<&str> = match command {
        Some(name) => vec![name],
        None => COMMANDS.to_vec(),
    };
    for name in names {
        let mut cmd = command_for_show(name);
        // `mut_arg` moves an argument to the end: keep the order the command declares.
        let order: Vec<String> = cmd
            .find_subcommand(name)
            .map(|sub| {
                configurable_args(name, sub)
                    .map(|a| a.get_id().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut from_file = Vec::new();
        if let Some(file) = &file {
            file.check(&cmd)?;
            let (installed, found) = file.install(cmd, name)?;
            cmd = installed;
            from_file = found;
        }
        let mut args: Vec<OsString> = vec!["agora".into(), name.into()];
        args.extend(flags.iter().cloned());
        let matches = match cmd.try_get_matches_from_mut(args) {
            Ok(matches) => matches,
            Err(e) => e.exit(),
        };
        let (_, sub_matches) = matches
            .subcommand()
            .ok_or_else(|| anyhow!("no command parsed"))?;
        let sub = cmd
            .find_subcommand(name)
            .ok_or_else(|| anyhow!("no command {name}"))?;
        out.push('\n');
        out.push_str(&render(name, sub, &order, sub_matches, &from_file));
    }
    Ok(out)
}

/// The command with nothing required, so that `config show` can parse a partial command line.
fn command_for_show(name: &str) -> Command {
    command().mut_subcommand(name, |sub| {
        let ids: Vec<String> = sub
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        ids.into_iter().fold(sub, |sub, id| {
            sub.mut_arg(id, |a| {
                a.required(false).required_unless_present(Resettable::Reset)
            })
        })
    })
}

/// One command's table: every configurable key with its value and source, or a comment where no
/// layer sets it.
fn render(
    name: &str,
    sub: &Command,
    order: &[String],
    matches: &ArgMatches,
    from_file: &[FromFile],
) -> String {
    let mut lines = vec![format!("[{name}]")];
    let args = order
        .iter()
        .filter_map(|id| sub.get_arguments().find(|a| a.get_id() == id.as_str()));
    for arg in args {
        let id = arg.get_id().as_str();
        let key = command_key(arg);
        let env = arg
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag".to_string(),
            Some(ValueSource::EnvVariable) => format!("env {env}"),
            Some(ValueSource::DefaultValue) => match from_file.iter().find(|f| f.id == id) {
                Some(f) => format!("file [{}]; env {env}", f.table),
                None => format!("default; env {env}"),
            },
            Some(_) | None => {
                lines.push(format!("# {key}: not set; env {env}"));
                continue;
            }
        };
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = if is_list(arg) {
            toml::Value::Array(raw.iter().map(|v| toml_value(v, false)).collect())
        } else {
            match raw.first() {
                Some(v) => toml_value(v, is_switch(arg)),
                None => {
                    lines.push(format!("# {key}: not set; env {env}"));
                    continue;
                }
            }
        };
        lines.push(format!("{key} = {value}  # {source}"));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// A raw flag value as the TOML value that reads back to the same text: a boolean for a switch,
/// a number where the text is one, a string otherwise.
fn toml_value(raw: &str, switch: bool) -> toml::Value {
    if switch {
        return toml::Value::Boolean(boolish(raw));
    }
    if let Ok(i) = raw.parse::<i64>()
        && i.to_string() == raw
    {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>()
        && f.is_finite()
        && f.to_string() == raw
    {
        return toml::Value::Float(f);
    }
    toml::Value::String(raw.to_string())
}

/// What clap's `BoolishValueParser` reads as true (the value was already accepted by it).
fn boolish(raw: &str) -> bool {
    matches!(
        raw.to_ascii_lowercase().as_str(),
        "y" | "yes" | "t" | "true" | "on" | "1"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use agora::config_file::SHARED_TABLES;

    #[test]
    fn the_command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn every_configurable_argument_has_an_environment_variable_and_a_table() {
        let cmd = command();
        for name in COMMANDS {
            let sub = cmd.find_subcommand(name).unwrap();
            let mut envs = Vec::new();
            for arg in configurable_args(name, sub) {
                let env = arg.get_env().unwrap().to_string_lossy().into_owned();
                assert!(env.starts_with("AGORA_"), "{name} {env}");
                assert!(!envs.contains(&env), "{name}: {env} twice");
                envs.push(env);
            }
        }
        for shared in SHARED {
            assert!(SHARED_TABLES.contains(&shared.table));
            let used = COMMANDS.iter().any(|name| {
                configurable_args(name, cmd.find_subcommand(name).unwrap())
                    .any(|a| shared_key(a).is_some_and(|k| k.key == shared.key))
            });
            assert!(used, "shared key {} is in no command", shared.key);
        }
    }

    #[test]
    fn the_subcommand_and_config_flag_are_found_before_parsing() {
        let argv = |s: &str| -> Vec<OsString> { s.split(' ').map(OsString::from).collect() };
        assert_eq!(
            subcommand_name(&argv("agora -v --config x.toml serve --model m")).as_deref(),
            Some("serve")
        );
        assert_eq!(
            config_flag(&argv("agora serve --config=a.toml")),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(config_flag(&argv("agora serve -- --config a.toml")), None);
    }

    #[test]
    fn values_render_as_toml_that_reads_back_the_same() {
        assert_eq!(toml_value("12", false), toml::Value::Integer(12));
        assert_eq!(toml_value("0.3", false), toml::Value::Float(0.3));
        assert_eq!(toml_value("007", false), toml::Value::String("007".into()));
        assert_eq!(toml_value("1", true), toml::Value::Boolean(true));
        assert_eq!(
            toml_value("auto", false),
            toml::Value::String("auto".into())
        );
    }
}
