//! `agora validate`: a validator. It joins the mesh as a client peer (its identity is the wallet's
//! hotkey), challenges every miner registered on the subnet with fresh texts, checks each answer
//! against its own copy of the model, keeps a moving average of each uid's score, and publishes the
//! scores as weights on the ledger: commit (hash of the weights and a salt kept on disk), then
//! reveal in the reveal epoch; or directly where the subnet has commit-reveal off.
//!
//! Two loops run side by side so that slow challenges never make a reveal miss its window:
//! - the prober (async): one round of challenges every `--round-interval-ms`;
//! - the ledger (a thread): every `--ledger-poll-ms` it catches up with the log and takes the next
//!   step of [`plan`]; writes take the log's writer lock for milliseconds (bounded wait), after
//!   catching up again under the lock so the step is decided on the exact next block.
//!
//! Blocks come from whoever seals them: on a local log run `agora ledger run --block-time MS`.
//! Stdout: `validating subnet N as uid U`, one `round ...` line per round, and one line per ledger
//! write (`committed`, `revealed`, `set weights`, `refused`).

use super::chain::{ChainSession, find_tx, outbox_dir};
use super::node::shutdown_signal;
use super::query::ClientArgs;
use agora::market::client::MarketClient;
use agora::market::runner::{KNOWN_MODELS, ModelRunner};
use agora::market::validator::{
    ChainView, CommitStore, PendingCommit, Plan, Probe, Scores, challenge_texts, embed_quality,
    generate_quality, open_writer, plan,
};
use agora_inference::backend::DevicePreference;
use agora_ledger::chain::{Outbox, Submission};
use agora_ledger::log::{GENESIS_PREV_HASH, LocalLog, TxLog, catch_up};
use agora_ledger::state::tx::{Call, sign_tx};
use agora_ledger::state::{LedgerGenesis, LedgerState, TxError};
use agora_protocols::{
    ChatMessage, EmbedInput, EmbedOutput, GenerateInput, GenerateOutput, Payload, PublicKey,
    Sampling, SecretKey, Task,
};
use anyhow::{Context, anyhow};
use clap::Args;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Challenge the subnet's miners, score them and publish weights on the ledger.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A model to challenge with (repeatable); the validator runs its own copy for the reference.
    #[arg(long = "model", value_name = "NAME", default_value = agora_inference::model_cache::MINILM)]
    pub models: Vec<String>,
    /// Texts per embedding challenge.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub texts: usize,
    /// Tokens per generation challenge (greedy).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_tokens: u32,
    /// Pause between two rounds of challenges, in milliseconds.
    #[arg(long, default_value_t = 5_000, value_name = "MS")]
    pub round_interval_ms: u64,
    /// Blocks between two weight sets (never below the subnet's rate limit; 0: one tempo).
    #[arg(long, default_value_t = 0, value_name = "BLOCKS")]
    pub weights_interval: u64,
    /// Weight of each new sample in a uid's moving average, 0 to 1.
    #[arg(long, default_value_t = 0.3, value_name = "ALPHA")]
    pub ema_alpha: f64,
    /// How often the ledger is read, in milliseconds.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub ledger_poll_ms: u64,
    /// With a chain: least time between two chain rounds (sending the outbox, mirroring new final
    /// blocks over JSON-RPC), in milliseconds. The ledger is still read every `--ledger-poll-ms`;
    /// a weights transaction is sent at once. Public RPCs with 12 s blocks need no faster.
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub chain_poll_ms: u64,
    /// Where the pending commit is kept [default: ~/.agora/validator/<hotkey>].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Serve the local JSON API, the status page and `/metrics` here (e.g. 127.0.0.1:7701; port 0
    /// picks one and prints it).
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<std::net::SocketAddr>,
}

/// What the prober and the ledger loop share.
#[derive(Debug)]
struct Shared {
    scores: Mutex<Scores>,
    /// The subnet's uids and hotkeys at the last catch-up, and our own uid.
    neurons: Mutex<(BTreeMap<u16, PublicKey>, Option<u16>)>,
    /// Complete rounds so far: weights are published only after one, so that a first commit made
    /// mid-round does not leave out the miners not yet challenged.
    rounds: AtomicU64,
    stop: AtomicBool,
    /// Ledger height and epoch, challenges and weight writes; set once the mesh is joined.
    metrics: std::sync::OnceLock<agora::metrics::Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs `agora validate` until SIGTERM or Ctrl-C.
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let key = args.client.key.load()?;
    let hotkey = key.public();
    let netuid = args.client.mesh.subnets.first().copied().unwrap_or(1);
    let log_path = args.client.ledger.log_path()?;
    let log_path_for_chain = log_path.clone();
    if args.client.ledger.chain.enabled() && args.client.ledger.chain.signer()?.is_none() {
        anyhow::bail!("a validator on a chain needs --chain-key (or AGORA_CHAIN_KEY) to pay gas");
    }
    let genesis_path = args.client.ledger.genesis_path()?;
    let genesis = LedgerGenesis::load(&genesis_path)
        .with_context(|| format!("reading the ledger genesis {}", genesis_path.display()))?
        .to_state();
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => dirs::home_dir()
            .context("no home directory: give --state-dir")?
            .join(".agora")
            .join("validator")
            .join(hotkey.to_hex()),
    };
    let mut tasks = Vec::new();
    for name in &args.models {
        let task = KNOWN_MODELS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| anyhow!("unknown model {name:?}"))?;
        tasks.push((task, name.clone()));
    }
    let runner = ModelRunner::load(&args.models, DevicePreference::from_env(), say)?;

    let shared = Arc::new(Shared {
        scores: Mutex::new(Scores::new(args.ema_alpha)),
        neurons: Mutex::new((BTreeMap::new(), None)),
        rounds: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        metrics: std::sync::OnceLock::new(),
    });
    let mut ledger = LedgerLoop {
        key: key.clone(),
        netuid,
        log_path,
        state: genesis,
        prev_hash: GENESIS_PREV_HASH,
        reader: None,
        store: CommitStore::new(&state_dir, netuid),
        interval: args.weights_interval,
        shared: Arc::clone(&shared),
        announced: false,
        uid: None,
        chain: if args.client.ledger.chain.enabled() {
            Some(ChainSink {
                session: ChainSession::open(&args.client.ledger.chain, &log_path_for_chain)?,
                outbox: Outbox::open(&outbox_dir(&log_path_for_chain))?,
                in_flight: None,
                refusals: std::collections::VecDeque::new(),
                every: Duration::from_millis(args.chain_poll_ms),
                last_round: None,
            })
        } else {
            None
        },
    };
    let poll = Duration::from_millis(args.ledger_poll_ms.max(10));
    let ledger_thread = std::thread::spawn(move || {
        while !ledger.shared.stop.load(Ordering::SeqCst) {
            if let Err(e) = ledger.tick() {
                eprintln!("ledger: {e:#}");
            }
            std::thread::sleep(poll);
        }
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal();
        let (client, _temp, status) = args.client.connect_observed("validate", "validate").await?;
        let _ = shared.metrics.set(status.metrics.clone());
        if let Some(addr) = args.http {
            let app =
                super::node::api(client.overlay().clone()).merge(agora::status::router(status));
            super::node::serve_http(addr, app).await?;
        }
        let prober = Prober {
            client,
            runner,
            tasks,
            texts: args.texts.max(1),
            max_tokens: args.max_tokens.max(1),
            shared: Arc::clone(&shared),
        };
        let interval = Duration::from_millis(args.round_interval_ms);
        let probing = tokio::spawn(async move {
            let mut round = 0u64;
            while !prober.shared.stop.load(Ordering::SeqCst) {
                round += 1;
                prober.round(round).await;
                tokio::time::sleep(interval).await;
            }
            prober
                .client
                .flush_settlements(Duration::from_secs(5))
                .await;
        });
        shutdown.await;
        shared.stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(10), probing).await;
        anyhow::Ok(())
    });
    shared.stop.store(true, Ordering::SeqCst);
    let _ = ledger_thread.join();
    runtime.shutdown_timeout(Duration::from_secs(5));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Challenges miners and records their scores.
struct Prober {
    client: MarketClient,
    runner: ModelRunner,
    tasks: Vec<(Task, String)>,
    texts: usize,
    max_tokens: u32,
    shared: Arc<Shared>,
}

/// One challenge: the encoded input and the reference output.
enum Challenge {
    Embed(EmbedInput, EmbedOutput),
    Generate(GenerateInput, GenerateOutput),
}

impl Prober {
    async fn round(&self, round: u64) {
        let (neurons, own) = lock(&self.shared.neurons).clone();
        let targets: Vec<(u16, PublicKey)> = neurons
            .into_iter()
            .filter(|(uid, _)| Some(*uid) != own)
            .collect();
        if own.is_none() || targets.is_empty() {
            return;
        }
        // One fresh challenge per model per round, the same for every miner of the round.
        let mut challenges = Vec::new();
        for (task, model) in &self.tasks {
            // Reading the provider table first lets the overlay learn the miners' addresses.
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                self.client.ranked_providers(*task, model),
            )
            .await;
            match self.challenge(*task, model).await {
                Ok(c) => challenges.push((model.clone(), c)),
                Err(e) => eprintln!("reference answer of {model} failed: {e:#}"),
            }
        }
        if challenges.is_empty() {
            return;
        }
        let deadline = self.client.config().deadline;
        let mut line = format!("round {round}:");
        for (uid, hotkey) in targets {
            let Ok(peer) = agora_overlay::peer_id_of(&hotkey) else {
                continue;
            };
            let mut total = 0.0;
            for (model, challenge) in &challenges {
                let probe = self.probe(peer, model, challenge).await;
                total += probe.score(deadline);
            }
            let sample = total / challenges.len() as f64;
            let mut scores = lock(&self.shared.scores);
            scores.record(uid, hotkey, sample);
            line.push_str(&format!(
                " uid {uid} {sample:.3} (avg {:.3})",
                scores.get(uid).unwrap_or(0.0)
            ));
        }
        say(&line);
        self.shared.rounds.fetch_add(1, Ordering::SeqCst);
    }

    async fn challenge(&self, task: Task, model: &str) -> anyhow::Result<Challenge> {
        let deadline = Instant::now() + Duration::from_secs(120);
        match task {
            Task::Embed => {
                let input = EmbedInput {
                    texts: challenge_texts(self.texts),
                };
                let bytes = self
                    .runner
                    .run(task, model, &input.to_bytes()?, deadline)
                    .await?;
                Ok(Challenge::Embed(input, EmbedOutput::from_bytes(&bytes)?))
            }
            Task::Generate => {
                let text = challenge_texts(1).join(" ");
                let input = GenerateInput {
                    messages: vec![ChatMessage {
                        role: "user".into(),
                        content: format!("Repeat after me: {text}"),
                    }],
                    max_tokens: self.max_tokens,
                    sampling: Sampling::Greedy,
                    stop: Vec::new(),
                };
                let bytes = self
                    .runner
                    .run(task, model, &input.to_bytes()?, deadline)
                    .await?;
                Ok(Challenge::Generate(
                    input,
                    GenerateOutput::from_bytes(&bytes)?,
                ))
            }
        }
    }

    async fn probe(
        &self,
        peer: agora_overlay::PeerId,
        model: &str,
        challenge: &Challenge,
    ) -> Probe {
        let answered = match challenge {
            Challenge::Embed(input, reference) => self
                .client
                .embed_at(peer, model, input)
                .await
                .map(|s| (embed_quality(reference, &s.output), s.latency)),
            Challenge::Generate(input, reference) => self
                .client
                .generate_at(peer, model, input)
                .await
                .map(|s| (generate_quality(reference, &s.output), s.latency)),
        };
        if let Some(m) = self.shared.metrics.get() {
            m.challenge(answered.is_ok());
        }
        match answered {
            Ok((quality, latency)) => Probe::Answered { quality, latency },
            Err(e) => {
                tracing::info!(%peer, error = %e, "challenge missed");
                Probe::Missed
            }
        }
    }
}

/// Follows the ledger and publishes weights.
struct LedgerLoop {
    key: SecretKey,
    netuid: u16,
    log_path: PathBuf,
    state: LedgerState,
    prev_hash: [u8; 32],
    reader: Option<LocalLog>,
    store: CommitStore,
    interval: u64,
    shared: Arc<Shared>,
    announced: bool,
    uid: Option<u16>,
    /// `None`: the local file log, written under its writer lock.
    chain: Option<ChainSink>,
}

/// How long a write waits for another writer's lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long a transaction sent to the chain may take to come back final in the mirror before the
/// validator stops waiting for it and plans again (the ledger refuses a stale nonce, so a late
/// arrival does no harm).
const IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(120);

/// Refusals kept to match a transaction that came back from the chain with its fate.
const REFUSALS_KEPT: usize = 256;

/// The chain as the validator's ledger: transactions go through the durable outbox beside the
/// mirror, and one at a time: the next step is planned only once the last one is back final
/// (or the outbox is empty after a restart), so a step is never planned twice.
struct ChainSink {
    session: ChainSession,
    outbox: Outbox,
    in_flight: Option<InFlight>,
    /// Recent refusals: (height, index in block, why).
    refusals: std::collections::VecDeque<(u64, usize, TxError)>,
    /// Least time between two rounds (`--chain-poll-ms`): each round is a few RPC calls, and the
    /// ledger is polled far more often than a public chain makes blocks.
    every: Duration,
    /// When the last round started.
    last_round: Option<Instant>,
}

impl ChainSink {
    /// Whether a round is due: none yet, or `every` passed since the last one.
    fn due(&self) -> bool {
        self.last_round.is_none_or(|t| t.elapsed() >= self.every)
    }
}

/// A transaction sent to the chain and not yet seen final.
struct InFlight {
    tx: Vec<u8>,
    /// The call's name, for the report line.
    name: &'static str,
    intended: Plan,
    /// The weights, for the report line of a commit.
    detail: String,
    /// The mirror's height when it was sent: it lands above.
    from: u64,
    since: Instant,
}

impl LedgerLoop {
    /// Applies the blocks sealed since the last call, through `log` (a reader, or the writer while
    /// it holds the lock). Returns the refusals, with their heights.
    fn catch_up_with(&mut self, log: &mut LocalLog) -> anyhow::Result<Vec<(u64, TxError)>> {
        let (hash, report) = catch_up(log, &mut self.state, self.prev_hash, 256)
            .context("replaying the ledger log")?;
        self.prev_hash = hash;
        if let Some(chain) = &mut self.chain {
            chain.refusals.extend(report.refused.iter().cloned());
            while chain.refusals.len() > REFUSALS_KEPT {
                chain.refusals.pop_front();
            }
        }
        Ok(report.refused.into_iter().map(|(h, _, e)| (h, e)).collect())
    }

    fn catch_up(&mut self) -> anyhow::Result<bool> {
        if self.reader.is_none() {
            if !self.log_path.exists() {
                return Ok(false);
            }
            self.reader = Some(LocalLog::open_read_only(&self.log_path)?);
        }
        let Some(mut reader) = self.reader.take() else {
            return Ok(false);
        };
        let result = self.catch_up_with(&mut reader);
        self.reader = Some(reader);
        result.map(|_| true)
    }

    fn publish_neurons(&mut self, view: Option<&ChainView>) {
        let neurons = self
            .state
            .subnet(self.netuid)
            .map(|s| s.neurons.iter().map(|n| (n.uid, n.hotkey)).collect())
            .unwrap_or_default();
        lock(&self.shared.scores).retain(&neurons);
        *lock(&self.shared.neurons) = (neurons, view.map(|v| v.uid));
    }

    fn view(&self) -> Option<ChainView> {
        ChainView::of(&self.state, self.netuid, &self.key.public())
    }

    /// One step: catch up, decide, and write if the plan says so.
    fn tick(&mut self) -> anyhow::Result<()> {
        if self.chain.as_ref().is_some_and(ChainSink::due) {
            self.chain_round()?;
        }
        if !self.catch_up()? {
            return Ok(());
        }
        let view = self.view();
        if let Some(m) = self.shared.metrics.get() {
            let height = self.state.height();
            let epoch = self
                .state
                .subnet(self.netuid)
                .map(|s| s.epoch_index(height))
                .unwrap_or(0);
            m.set_ledger(height, epoch);
        }
        self.publish_neurons(view.as_ref());
        let Some(view) = view else {
            if !self.announced {
                say(&format!(
                    "waiting: hotkey {} is not registered on subnet {}",
                    self.key.public(),
                    self.netuid
                ));
                self.announced = true;
            }
            return Ok(());
        };
        if self.uid != Some(view.uid) {
            self.uid = Some(view.uid);
            say(&format!(
                "validating subnet {} as uid {}",
                self.netuid, view.uid
            ));
        }
        if self.chain_busy()? {
            return Ok(());
        }
        let pending = self.store.load()?;
        let next = match plan(&view, pending.as_ref(), self.interval) {
            Plan::Commit | Plan::SetWeights if self.shared.rounds.load(Ordering::SeqCst) == 0 => {
                Plan::Wait
            }
            next => next,
        };
        match next {
            Plan::Wait => Ok(()),
            Plan::DropPending => {
                self.store.clear()?;
                Ok(())
            }
            Plan::Reveal => {
                let Some(pending) = pending else {
                    return Ok(());
                };
                self.write(Plan::Reveal, pending.reveal_call(), None)
            }
            Plan::Commit => {
                let weights = lock(&self.shared.scores).weights(Some(view.uid));
                let Some((uids, weights)) = weights else {
                    return Ok(());
                };
                let pending = PendingCommit::new(&self.key.public(), self.netuid, uids, weights)?;
                self.write(Plan::Commit, pending.commit_call(), Some(pending))
            }
            Plan::SetWeights => {
                let weights = lock(&self.shared.scores).weights(Some(view.uid));
                let Some((uids, weights)) = weights else {
                    return Ok(());
                };
                let call = Call::SetWeights {
                    netuid: self.netuid,
                    uids,
                    weights,
                };
                self.write(Plan::SetWeights, call, None)
            }
        }
    }

    /// Sends the outbox and mirrors the chain's new final blocks (nothing without a chain). An
    /// unreachable RPC is only logged: the outbox keeps what waits.
    fn chain_round(&mut self) -> anyhow::Result<()> {
        let Some(chain) = &mut self.chain else {
            return Ok(());
        };
        chain.last_round = Some(Instant::now());
        match chain.session.round(Some(&chain.outbox)) {
            Ok(round) => {
                if let Some((_, reason)) = round.flushed.failed.first()
                    && let Some(f) = chain.in_flight.take()
                {
                    say(&format!("refused {} by the chain: {reason}", f.name));
                    if f.intended != Plan::SetWeights {
                        self.store.clear()?;
                    }
                }
                Ok(())
            }
            Err(e) if super::chain::is_fatal(&e) => Err(e),
            Err(e) => {
                eprintln!("chain unreachable, the outbox waits: {e:#}");
                Ok(())
            }
        }
    }

    /// With a chain: whether a transaction is still on its way (so nothing new is planned), after
    /// reporting the one that came back final since the last call.
    fn chain_busy(&mut self) -> anyhow::Result<bool> {
        let height = self.state.height();
        let Some(chain) = &mut self.chain else {
            return Ok(false);
        };
        let Some(f) = &chain.in_flight else {
            // After a restart the outbox may still hold what an earlier run sent.
            return Ok(!chain.outbox.is_empty()?);
        };
        let landed = match find_tx(&self.log_path, f.from, &f.tx)? {
            Some((h, index)) if h <= height => Some((h, index)),
            _ => None,
        };
        let Some((h, index)) = landed else {
            if f.since.elapsed() > IN_FLIGHT_TIMEOUT {
                say(&format!(
                    "gave up waiting for a {} sent {} s ago",
                    plan_name(f.intended),
                    IN_FLIGHT_TIMEOUT.as_secs()
                ));
                chain.in_flight = None;
                return Ok(false);
            }
            return Ok(true);
        };
        let refused = chain
            .refusals
            .iter()
            .find(|(rh, ri, _)| (*rh, *ri) == (h, index))
            .map(|(_, _, e)| e.clone());
        let Some(f) = chain.in_flight.take() else {
            return Ok(false);
        };
        self.report(f.intended, f.name, h, refused.as_ref(), &f.detail)?;
        Ok(false)
    }

    fn write(
        &mut self,
        intended: Plan,
        call: Call,
        pending: Option<PendingCommit>,
    ) -> anyhow::Result<()> {
        if self.chain.is_some() {
            self.write_chain(intended, call, pending)
        } else {
            self.write_local(intended, call, pending)
        }
    }

    /// Through the chain: keep the commit's salt (for a commit), sign with the next nonce of the
    /// mirrored state, queue durably in the outbox and send. The outcome is reported when the
    /// transaction comes back final ([`LedgerLoop::chain_busy`]).
    fn write_chain(
        &mut self,
        intended: Plan,
        call: Call,
        pending: Option<PendingCommit>,
    ) -> anyhow::Result<()> {
        if let Some(pending) = &pending {
            self.store.save(pending)?;
        }
        let name = call.name();
        let nonce = self.state.next_nonce(&self.key.public());
        let tx = sign_tx(&self.key, nonce, call)?.to_bytes()?;
        let Some(chain) = &mut self.chain else {
            return Ok(());
        };
        chain.outbox.push(&Submission::Transaction(tx.clone()))?;
        chain.in_flight = Some(InFlight {
            tx,
            name,
            intended,
            detail: weights_detail(pending.as_ref()),
            from: self.state.height() + 1,
            since: Instant::now(),
        });
        self.chain_round()
    }

    /// Under the writer lock: catch up to the exact last block, check that the plan still holds,
    /// keep the commit's salt (for a commit), append and seal; then report what the ledger did.
    fn write_local(
        &mut self,
        intended: Plan,
        call: Call,
        pending: Option<PendingCommit>,
    ) -> anyhow::Result<()> {
        let name = call.name();
        let (block, refused) = {
            let mut log = open_writer(&self.log_path, LOCK_WAIT)?;
            self.catch_up_with(&mut log)?;
            let Some(view) = self.view() else {
                return Ok(());
            };
            if plan(&view, self.store.load()?.as_ref(), self.interval) != intended {
                return Ok(());
            }
            if let Some(pending) = &pending {
                self.store.save(pending)?;
            }
            let nonce = self.state.next_nonce(&self.key.public());
            let tx = sign_tx(&self.key, nonce, call)?;
            log.append(&tx)?;
            let block = log.seal_block()?;
            let refused = self.catch_up_with(&mut log)?;
            (block, refused)
        };
        let refused = refused
            .into_iter()
            .find(|(h, _)| *h == block.height)
            .map(|(_, e)| e);
        self.report(
            intended,
            name,
            block.height,
            refused.as_ref(),
            &weights_detail(pending.as_ref()),
        )
    }

    /// Says what the ledger did with a weights transaction that landed at `height`, counts it,
    /// and forgets the commit where it is done with (revealed, or refused).
    fn report(
        &mut self,
        intended: Plan,
        name: &str,
        height: u64,
        refused: Option<&TxError>,
        detail: &str,
    ) -> anyhow::Result<()> {
        let epoch = self
            .state
            .subnet(self.netuid)
            .map(|s| s.epoch_index(height))
            .unwrap_or(0);
        if let Some(error) = refused {
            say(&format!(
                "refused {name} at block {height} (epoch {epoch}): {error}"
            ));
            if intended != Plan::SetWeights {
                self.store.clear()?;
            }
            if let Some(m) = self.shared.metrics.get() {
                m.weights_written("refused");
            }
            return Ok(());
        }
        if let Some(m) = self.shared.metrics.get() {
            m.weights_written(match intended {
                Plan::Commit => "commit",
                Plan::Reveal => "reveal",
                _ => "set",
            });
        }
        say(&format!(
            "{} on subnet {} at block {height} (epoch {epoch}){detail}",
            plan_name(intended),
            self.netuid
        ));
        if intended == Plan::Reveal {
            self.store.clear()?;
        }
        Ok(())
    }
}

/// The report line's verb for a step.
fn plan_name(step: Plan) -> &'static str {
    match step {
        Plan::Commit => "committed weights",
        Plan::Reveal => "revealed weights",
        _ => "set weights",
    }
}

/// The weights of a commit, for its report line.
fn weights_detail(pending: Option<&PendingCommit>) -> String {
    pending
        .map(|p| format!(" {:?}", p.uids.iter().zip(&p.weights).collect::<Vec<_>>()))
        .unwrap_or_default()
}
