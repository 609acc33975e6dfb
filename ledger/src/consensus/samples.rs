//! Replays `yuma_samples.json` (schema `yuma-vectors/1`): cases taken from the chain's own tests,
//! each a sequence of epochs with expectations.
//!
//! The replay is shared by the library test (calling [`super::run_epoch`]) and the CLI test
//! (running `agora consensus epoch`), so both check the same expectations the same way. Carry rules
//! are the file's: `bonds` and `validator_permit` come from the previous epoch's output; stake,
//! weights, last_update and block_at_registration carry over unless an epoch restates them.
//! `live_commit_block` (commit-reveal's anti-sniping input, absent = no live commits) is an input
//! like those, never taken from an output: the initial state or an epoch states it and later
//! epochs keep it until one restates it (`[]` turns it off); cases with commits state it in every
//! epoch, since commits expire.
//!
//! Anything the replay does not understand (an unknown epoch field or expectation) is reported as
//! a failure rather than skipped, so a new kind of expectation can never pass silently.
//!
//! Besides exact values (per uid, per bond entry, or `bonds_rows`: whole stored bond rows), an
//! epoch may list `relations`: orderings a chain test asserts without fixing the numbers
//! (`bond[0][2]` grew since an earlier epoch, two emissions are equal, a sum is within a
//! tolerance). A case may carry `known_failure` (see [`known_failure`]) so that a test
//! can replay it, report it, and keep going while the cause is fixed.

use super::types::{EpochInput, EpochOutput, EpochParams, EpochState, SparseRow};
use serde_json::{Map, Value};
use thiserror::Error;

/// Why a sample file or case could not be read.
#[derive(Debug, Error)]
pub enum SampleError {
    /// Not JSON, or not the expected shape.
    #[error("sample file: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is missing or has the wrong type.
    #[error("sample case {case}: {what}")]
    Shape {
        /// Case id.
        case: String,
        /// What is wrong.
        what: String,
    },
}

/// Outcome of replaying one case.
#[derive(Debug, Default, Clone)]
pub struct CaseReport {
    /// Case id.
    pub id: String,
    /// Epochs run.
    pub epochs: usize,
    /// Individual expected values compared.
    pub checks: usize,
    /// One line per expectation that did not hold (or could not be checked).
    pub failures: Vec<String>,
    /// Informational (`_info_*`) values compared; the file marks them as not asserted.
    pub info_checks: usize,
    /// Differences in `_info_*` values.
    pub info: Vec<String>,
}

impl CaseReport {
    /// Every expectation held, and at least one was checked.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.checks > 0
    }
}

/// The `known_failure` reason of a case, if it is marked as one: a case the implementation is known
/// not to meet yet. Callers still replay it, report it loudly, and should insist that it still
/// fails, so that the mark is removed as soon as the cause is fixed.
pub fn known_failure(case: &Value) -> Option<&str> {
    case.get("known_failure").and_then(Value::as_str)
}

/// Outcome of replaying every case of a file (see [`replay_file`]).
#[derive(Debug, Default, Clone)]
pub struct FileReport {
    /// One report per case, in file order.
    pub cases: Vec<CaseReport>,
    /// Cases marked `known_failure` that did fail: `(id, reason)`.
    pub known_failures: Vec<(String, String)>,
    /// What must fail a test: cases that failed unmarked, and marked cases that now pass.
    pub problems: Vec<String>,
}

impl FileReport {
    /// Writes one line per case (and its failures and informational differences), then the known
    /// failures, to stderr: what a test run shows about a replayed file.
    pub fn eprint(&self) {
        for r in &self.cases {
            eprintln!(
                "{:<72} epochs {:>2} checks {:>4} failures {:>2} info {:>3} (differing {})",
                r.id,
                r.epochs,
                r.checks,
                r.failures.len(),
                r.info_checks,
                r.info.len()
            );
            for line in &r.failures {
                eprintln!("    failure: {line}");
            }
            for line in &r.info {
                eprintln!("    info (not asserted): {line}");
            }
        }
        for (id, why) in &self.known_failures {
            eprintln!("KNOWN FAILURE (not failing the test): {id}: {why}");
        }
    }
}

/// Replays every case of a sample file through `run`, one [`replay_case`] each, and sorts the
/// outcomes: a case marked `known_failure` is expected to fail (and reported in
/// [`FileReport::known_failures`]); if it passes, that is a problem too, so the mark is removed.
pub fn replay_file<F>(file: &str, mut run: F) -> Result<FileReport, SampleError>
where
    F: FnMut(&EpochInput) -> Result<EpochOutput, String>,
{
    let mut summary = FileReport::default();
    for case in cases(file)? {
        let report = replay_case(&case, &mut run)?;
        match (known_failure(&case), report.passed()) {
            (None, true) => {}
            (None, false) => summary.problems.push(format!(
                "{}:\n  {}",
                report.id,
                report.failures.join("\n  ")
            )),
            (Some(why), false) => summary
                .known_failures
                .push((report.id.clone(), why.to_owned())),
            (Some(why), true) => summary.problems.push(format!(
                "{}: marked known_failure ({why}) but now passes: remove the mark",
                report.id
            )),
        }
        summary.cases.push(report);
    }
    Ok(summary)
}

/// The cases of a sample file, as JSON values.
pub fn cases(file: &str) -> Result<Vec<Value>, SampleError> {
    let root: Value = serde_json::from_str(file)?;
    match root.get("cases") {
        Some(Value::Array(cases)) => Ok(cases.clone()),
        _ => Err(SampleError::Shape {
            case: "-".into(),
            what: "no \"cases\" array".into(),
        }),
    }
}

fn shape(case: &str, what: impl Into<String>) -> SampleError {
    SampleError::Shape {
        case: case.to_owned(),
        what: what.into(),
    }
}

fn field<T: serde::de::DeserializeOwned>(
    obj: &Value,
    key: &str,
    case: &str,
) -> Result<T, SampleError> {
    let v = obj
        .get(key)
        .ok_or_else(|| shape(case, format!("missing field {key}")))?;
    serde_json::from_value(v.clone()).map_err(|e| shape(case, format!("field {key}: {e}")))
}

fn opt_field<T: serde::de::DeserializeOwned>(
    obj: &Value,
    key: &str,
    case: &str,
) -> Result<Option<T>, SampleError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| shape(case, format!("field {key}: {e}"))),
    }
}

const EPOCH_KEYS: &[&str] = &[
    "current_block",
    "weights",
    "last_update",
    "stake",
    "block_at_registration",
    "expect",
    "bonds_override_rows",
    "validator_permit_override",
    "bonds_remove_columns",
    "live_commit_block",
];

/// Replays one case through `run` (the library or the binary), epoch by epoch.
pub fn replay_case<F>(case: &Value, mut run: F) -> Result<CaseReport, SampleError>
where
    F: FnMut(&EpochInput) -> Result<EpochOutput, String>,
{
    let id: String = field(case, "id", "?")?;
    let params: EpochParams = field(case, "params", &id)?;
    let init = case
        .get("initial_state")
        .ok_or_else(|| shape(&id, "missing initial_state"))?;
    let mut state = EpochState {
        current_block: opt_field(init, "current_block", &id)?.unwrap_or(0),
        last_mechanism_step_block: opt_field(init, "last_mechanism_step_block", &id)?.unwrap_or(0),
        stake: field(init, "stake", &id)?,
        block_at_registration: field(init, "block_at_registration", &id)?,
        last_update: field(init, "last_update", &id)?,
        validator_permit: field(init, "validator_permit", &id)?,
        weights: field(init, "weights", &id)?,
        bonds: field(init, "bonds", &id)?,
        live_commit_block: opt_field(init, "live_commit_block", &id)?.unwrap_or_default(),
    };
    let epochs: Vec<Value> = field(case, "epochs", &id)?;
    let mut report = CaseReport {
        id: id.clone(),
        ..CaseReport::default()
    };
    // Outputs so far: `relations` may compare with an earlier epoch (`...@epoch`).
    let mut history: Vec<EpochOutput> = Vec::with_capacity(epochs.len());
    for (e, epoch) in epochs.iter().enumerate() {
        let Some(obj) = epoch.as_object() else {
            return Err(shape(&id, format!("epoch {e} is not an object")));
        };
        for key in obj.keys() {
            if !key.starts_with('_') && !EPOCH_KEYS.contains(&key.as_str()) {
                report
                    .failures
                    .push(format!("epoch {e}: unknown field {key}, not replayed"));
            }
        }
        if let Some(b) = opt_field(epoch, "current_block", &id)? {
            state.current_block = b;
        }
        if let Some(w) = opt_field(epoch, "weights", &id)? {
            state.weights = w;
        }
        if let Some(v) = opt_field(epoch, "last_update", &id)? {
            state.last_update = v;
        }
        if let Some(v) = opt_field(epoch, "stake", &id)? {
            state.stake = v;
        }
        if let Some(v) = opt_field(epoch, "block_at_registration", &id)? {
            state.block_at_registration = v;
        }
        if let Some(v) = opt_field(epoch, "live_commit_block", &id)? {
            state.live_commit_block = v;
        }
        apply_overrides(epoch, &mut state, &id)?;
        let input = EpochInput {
            params: params.clone(),
            state: state.clone(),
        };
        let out = match run(&input) {
            Ok(out) => out,
            Err(msg) => {
                report
                    .failures
                    .push(format!("epoch {e}: run failed: {msg}"));
                return Ok(report);
            }
        };
        report.epochs += 1;
        if let Some(expect) = epoch.get("expect") {
            check(expect, &out, &history, e, &mut report);
        }
        state.bonds = out
            .bonds
            .iter()
            .map(|row| row.iter().map(|&(j, v)| (u64::from(j), v)).collect())
            .collect();
        state.validator_permit = out.validator_permit.clone();
        history.push(out);
    }
    Ok(report)
}

/// Chain events between epochs: a row of bonds replaced, permits set, bond columns removed.
fn apply_overrides(epoch: &Value, state: &mut EpochState, id: &str) -> Result<(), SampleError> {
    if let Some(rows) = opt_field::<Map<String, Value>>(epoch, "bonds_override_rows", id)? {
        for (uid, row) in rows {
            let i: usize = uid
                .parse()
                .map_err(|_| shape(id, format!("bonds_override_rows key {uid}")))?;
            let row: SparseRow = serde_json::from_value(row)
                .map_err(|e| shape(id, format!("bonds_override_rows[{uid}]: {e}")))?;
            match state.bonds.get_mut(i) {
                Some(slot) => *slot = row,
                None => return Err(shape(id, format!("bonds_override_rows uid {uid} >= n"))),
            }
        }
    }
    match epoch.get("validator_permit_override") {
        None => {}
        Some(Value::Array(_)) => {
            state.validator_permit = field(epoch, "validator_permit_override", id)?;
        }
        Some(Value::Object(map)) => {
            for (uid, v) in map {
                let i: usize = uid
                    .parse()
                    .map_err(|_| shape(id, format!("validator_permit_override key {uid}")))?;
                let permit = v
                    .as_bool()
                    .ok_or_else(|| shape(id, "validator_permit_override values must be bools"))?;
                match state.validator_permit.get_mut(i) {
                    Some(slot) => *slot = permit,
                    None => return Err(shape(id, format!("validator_permit_override uid {uid}"))),
                }
            }
        }
        Some(_) => {
            return Err(shape(
                id,
                "validator_permit_override must be array or object",
            ));
        }
    }
    if let Some(cols) = opt_field::<Vec<u64>>(epoch, "bonds_remove_columns", id)? {
        for row in state.bonds.iter_mut() {
            row.retain(|(j, _)| !cols.contains(j));
        }
    }
    Ok(())
}

fn u16_vec<'a>(out: &'a EpochOutput, key: &str) -> Option<&'a [u16]> {
    Some(match key {
        "consensus_u16" => &out.consensus_u16,
        "incentive_u16" => &out.incentive_u16,
        "dividends_u16" => &out.dividends_u16,
        "validator_trust_u16" => &out.validator_trust_u16,
        "stake_weight_u16" => &out.stake_weight_u16,
        _ => return None,
    })
}

fn u64_vec<'a>(out: &'a EpochOutput, key: &str) -> Option<&'a [u64]> {
    Some(match key {
        "emission" => &out.emission,
        "server_emission" => &out.server_emission,
        "validator_emission" => &out.validator_emission,
        _ => return None,
    })
}

fn bool_vec<'a>(out: &'a EpochOutput, key: &str) -> Option<&'a [bool]> {
    Some(match key {
        "validator_permit" => &out.validator_permit,
        "active" => &out.active,
        _ => return None,
    })
}

fn bond_at(out: &EpochOutput, i: usize, j: u64) -> u64 {
    out.bonds
        .get(i)
        .and_then(|row| row.iter().find(|(c, _)| u64::from(*c) == j))
        .map_or(0, |&(_, v)| u64::from(v))
}

/// Compares a map `{"uid": value}` against a vector; `get` reads the output at a uid.
fn check_map(
    key: &str,
    want: &Value,
    epoch: usize,
    get: impl Fn(&str) -> Option<Value>,
    sink: &mut Vec<String>,
) -> usize {
    let Some(map) = want.as_object() else {
        sink.push(format!("epoch {epoch}: {key} is not an object"));
        return 0;
    };
    let mut checks = 0;
    for (at, w) in map {
        checks += 1;
        match get(at) {
            Some(got) if &got == w => {}
            Some(got) => sink.push(format!("epoch {epoch}: {key}[{at}] = {got}, want {w}")),
            None => sink.push(format!("epoch {epoch}: {key}[{at}] does not exist")),
        }
    }
    checks
}

fn check(
    expect: &Value,
    out: &EpochOutput,
    history: &[EpochOutput],
    epoch: usize,
    report: &mut CaseReport,
) {
    let Some(map) = expect.as_object() else {
        report
            .failures
            .push(format!("epoch {epoch}: expect is not an object"));
        return;
    };
    for (key, want) in map {
        if let Some(info) = key.strip_prefix("_info") {
            report.info_checks += check_info(info, want, out, epoch, &mut report.info);
            continue;
        }
        if key.starts_with('_') {
            continue;
        }
        let idx = |at: &str| at.parse::<usize>().ok();
        let checks = if let Some(v) = u16_vec(out, key) {
            check_map(
                key,
                want,
                epoch,
                |at| idx(at).and_then(|i| v.get(i)).map(|&x| x.into()),
                &mut report.failures,
            )
        } else if let Some(v) = u64_vec(out, key) {
            check_map(
                key,
                want,
                epoch,
                |at| idx(at).and_then(|i| v.get(i)).map(|&x| x.into()),
                &mut report.failures,
            )
        } else if let Some(v) = bool_vec(out, key) {
            check_map(
                key,
                want,
                epoch,
                |at| idx(at).and_then(|i| v.get(i)).map(|&x| x.into()),
                &mut report.failures,
            )
        } else if key == "bonds_u16" {
            let get = |at: &str| {
                let (i, j) = at.split_once(',')?;
                let (i, j) = (
                    i.trim().parse::<usize>().ok()?,
                    j.trim().parse::<u64>().ok()?,
                );
                (i < out.bonds.len()).then(|| bond_at(out, i, j).into())
            };
            check_map(key, want, epoch, get, &mut report.failures)
        } else if key == "bonds_rows" {
            // A whole stored row, entries and order exactly: `bonds_u16` reads an absent entry
            // as 0, so it cannot tell a row `[]` from `[(j, 0)]`; a chain test comparing the row
            // can.
            let get = |at: &str| {
                let row = out.bonds.get(idx(at)?)?;
                serde_json::to_value(row).ok()
            };
            check_map(key, want, epoch, get, &mut report.failures)
        } else if key == "dividends_approx" {
            check_approx(want, &out.dividends_u16, epoch, &mut report.failures)
        } else if key == "relations" {
            check_relations(want, out, history, epoch, &mut report.failures)
        } else {
            report.failures.push(format!(
                "epoch {epoch}: unknown expectation {key}, not checked"
            ));
            0
        };
        report.checks += checks;
    }
}

/// One value of an output by reference: `field[uid]` or `bonds_u16[i,j]`, from `out`, or from an
/// earlier epoch's output with a suffix `@epoch`. Booleans read as 0/1.
fn lookup(reference: &str, out: &EpochOutput, history: &[EpochOutput]) -> Result<i128, String> {
    let (body, source) = match reference.split_once('@') {
        None => (reference, out),
        Some((body, at)) => {
            let at: usize = at
                .trim()
                .parse()
                .map_err(|_| format!("bad epoch in reference {reference:?}"))?;
            let earlier = history
                .get(at)
                .ok_or_else(|| format!("{reference:?}: epoch {at} has not run yet"))?;
            (body, earlier)
        }
    };
    let (key, index) = body
        .trim()
        .strip_suffix(']')
        .and_then(|b| b.split_once('['))
        .ok_or_else(|| format!("bad reference {reference:?}: want field[index]"))?;
    let missing = || format!("{reference:?} does not exist");
    if key == "bonds_u16" {
        let (i, j) = index.split_once(',').ok_or_else(missing)?;
        let (i, j) = (
            i.trim().parse::<usize>().map_err(|_| missing())?,
            j.trim().parse::<u64>().map_err(|_| missing())?,
        );
        if i >= source.bonds.len() {
            return Err(missing());
        }
        return Ok(bond_at(source, i, j).into());
    }
    let i: usize = index.trim().parse().map_err(|_| missing())?;
    if let Some(v) = u16_vec(source, key) {
        v.get(i).map(|&x| x.into()).ok_or_else(missing)
    } else if let Some(v) = u64_vec(source, key) {
        v.get(i).map(|&x| x.into()).ok_or_else(missing)
    } else if let Some(v) = bool_vec(source, key) {
        v.get(i).map(|&x| i128::from(x)).ok_or_else(missing)
    } else {
        Err(format!("unknown field in reference {reference:?}"))
    }
}

/// A side of a relation: an integer, a reference, or a list of references that is summed.
fn operand(v: &Value, out: &EpochOutput, history: &[EpochOutput]) -> Result<i128, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(i128::from)
            .or_else(|| n.as_i64().map(i128::from))
            .ok_or_else(|| format!("relation operand {n} is not an integer")),
        Value::String(r) => lookup(r, out, history),
        Value::Array(refs) => refs.iter().try_fold(0i128, |sum, r| {
            Ok(sum.saturating_add(operand(r, out, history)?))
        }),
        other => Err(format!(
            "relation operand {other} is not a number or reference"
        )),
    }
}

/// `[{"lhs": .., "op": "<"|"<="|"=="|"!="|">="|">", "rhs": .., "abs_tol": n?}, ...]`; `abs_tol` only
/// with `==` (|lhs − rhs| <= abs_tol).
fn check_relations(
    want: &Value,
    out: &EpochOutput,
    history: &[EpochOutput],
    epoch: usize,
    sink: &mut Vec<String>,
) -> usize {
    let Some(list) = want.as_array() else {
        sink.push(format!("epoch {epoch}: relations is not an array"));
        return 0;
    };
    for rel in list {
        let sides = rel
            .get("lhs")
            .zip(rel.get("rhs"))
            .ok_or_else(|| "needs lhs and rhs".to_owned())
            .and_then(|(l, r)| Ok((operand(l, out, history)?, operand(r, out, history)?)));
        let (lhs, rhs) = match sides {
            Ok(sides) => sides,
            Err(e) => {
                sink.push(format!("epoch {epoch}: relation {rel}: {e}"));
                continue;
            }
        };
        let tol = rel.get("abs_tol").and_then(Value::as_u64).map(u128::from);
        let op = rel.get("op").and_then(Value::as_str).unwrap_or("");
        let holds = match (op, tol) {
            ("==", Some(tol)) => lhs.abs_diff(rhs) <= tol,
            (_, Some(_)) => {
                sink.push(format!(
                    "epoch {epoch}: relation {rel}: abs_tol needs op =="
                ));
                continue;
            }
            ("==", None) => lhs == rhs,
            ("!=", None) => lhs != rhs,
            ("<", None) => lhs < rhs,
            ("<=", None) => lhs <= rhs,
            (">", None) => lhs > rhs,
            (">=", None) => lhs >= rhs,
            _ => {
                sink.push(format!("epoch {epoch}: relation {rel}: unknown op {op:?}"));
                continue;
            }
        };
        if !holds {
            sink.push(format!(
                "epoch {epoch}: relation {rel} does not hold: lhs = {lhs}, rhs = {rhs}"
            ));
        }
    }
    list.len()
}

/// `|got − want| <= tol`, false when either is NaN.
fn within(got: f64, want: f64, tol: f64) -> bool {
    matches!(
        (got - want).abs().partial_cmp(&tol),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    )
}

/// `{"values": [f, ...], "abs_tol": t}` against `u16 / 65535`.
fn check_approx(want: &Value, got: &[u16], epoch: usize, sink: &mut Vec<String>) -> usize {
    let values = want.get("values").and_then(Value::as_array);
    let tol = want.get("abs_tol").and_then(Value::as_f64);
    let (Some(values), Some(tol)) = (values, tol) else {
        sink.push(format!(
            "epoch {epoch}: dividends_approx needs values and abs_tol"
        ));
        return 0;
    };
    if values.len() != got.len() {
        sink.push(format!(
            "epoch {epoch}: dividends_approx has {} values for {} uids",
            values.len(),
            got.len()
        ));
        return 0;
    }
    for (i, (w, &g)) in values.iter().zip(got).enumerate() {
        let w = w.as_f64().unwrap_or(f64::NAN);
        let g = f64::from(g) / 65535.0;
        // NaN (an unreadable target) fails this comparison too.
        if !within(g, w, tol) {
            sink.push(format!(
                "epoch {epoch}: dividends[{i}] = {g:.6}, want {w} ± {tol}"
            ));
        }
    }
    values.len()
}

/// Records differences in informational values (`_info_debug_comment.emission`, listed bonds).
fn check_info(
    kind: &str,
    want: &Value,
    out: &EpochOutput,
    epoch: usize,
    sink: &mut Vec<String>,
) -> usize {
    let mut checks = 0;
    if let Some(em) = want.get("emission") {
        checks += check_map(
            &format!("_info{kind}.emission"),
            em,
            epoch,
            |at| {
                at.parse::<usize>()
                    .ok()
                    .and_then(|i| out.emission.get(i))
                    .map(|&x| x.into())
            },
            sink,
        );
    }
    if let (Some(vals), Some(tol)) = (
        want.get("values").and_then(Value::as_object),
        want.get("abs_tol").and_then(Value::as_f64),
    ) {
        for (at, w) in vals {
            checks += 1;
            let Some((i, j)) = at.split_once(',') else {
                continue;
            };
            let (Ok(i), Ok(j)) = (i.parse::<usize>(), j.parse::<u64>()) else {
                continue;
            };
            let got = bond_at(out, i, j) as f64 / 65535.0;
            let w = w.as_f64().unwrap_or(f64::NAN);
            if !within(got, w, tol) {
                sink.push(format!(
                    "epoch {epoch}: _info{kind} bond[{at}] = {got:.4}, listed {w}"
                ));
            }
        }
    }
    checks
}
