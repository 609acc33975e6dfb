//! The models a miner serves, each behind a bounded queue on its own worker thread.
//!
//! Model calls block for milliseconds to seconds, so none runs on the async executor: each model is
//! owned by a [`Scheduler`] worker thread, and async callers wait on a ticket. The queue is what turns
//! load into a clear answer instead of latency: when it is full, [`ModelRunner::run`] answers
//! [`RunnerError::Busy`] at once and the client goes to another provider.
//!
//! - **Embedding** (all-MiniLM-L6-v2): every text of every query is one scheduler request, so the
//!   texts of concurrent queries are batched into one encoder call. That is what makes 32 concurrent
//!   queries cost little more than one.
//! - **Generation** (SmolLM2-135M-Instruct): a [`GenerationScheduler`] decodes up to
//!   [`GENERATE_BATCH`] chats together, step by step: a new chat joins between two steps, a finished
//!   one frees its seat at once, and every chat gets the tokens it would get alone. Behind the seats
//!   a short queue. A query whose deadline passes is answered [`RunnerError::Expired`] at the
//!   deadline and leaves the batch at the next step; so does one whose caller goes away (the future
//!   of [`ModelRunner::run`] dropped).
//!
//! In front of each model's scheduler sits a [`FairQueue`]: per-client queues served by deficit
//! round robin, letting only a little work into the scheduler at once (two encoder batches' worth of
//! texts; one seat per chat in the generator's batch). So one client with many queries queued does
//! not make another client's query wait behind all of them: it waits for at most one turn of each
//! other waiting client. [`ModelRunner::run_for`] names the client; [`ModelRunner::run`] runs as
//! one anonymous client.
//!
//! Payloads are decoded and encoded here with the formats of `agora_protocols::task`, so the provider
//! sees only bytes in and bytes out.

use crate::market::fair::{FairConfig, FairError, FairQueue, FairStats};
use agora_inference::backend::DevicePreference;
use agora_inference::embedding::{self, SentenceEmbedder};
use agora_inference::generation::{
    ChatMessage, FinishReason, GenerationError, GenerationParams, GenerationScheduler, Generator,
    RequestError, SamplingParams, default_model_path,
};
use agora_inference::model_cache::{MINILM, SMOLLM2};
use agora_inference::scheduler::{Scheduler, SchedulerConfig, SchedulerError};
use agora_protocols::{
    EmbedInput, EmbedOutput, Finish, GenerateInput, GenerateOutput, Payload, PublicKey,
    QueryErrorKind, Sampling, Task,
};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Every model this build can serve, with its task.
pub const KNOWN_MODELS: &[(&str, Task)] = &[(MINILM, Task::Embed), (SMOLLM2, Task::Generate)];

/// Texts waiting for the encoder, over all queries: four full queries' worth.
const EMBED_QUEUE: usize = 4 * agora_protocols::task::MAX_EMBED_TEXTS;
/// Texts handed to the encoder's scheduler at once: two batches, so one can form while the other
/// is encoded. The rest wait in the fair queue, where the order is fair rather than first come.
const EMBED_IN_FLIGHT: usize = 2 * embedding::MAX_BATCH;
/// Texts a client may send per turn of the fair queue: one encoder batch.
const EMBED_QUANTUM: usize = embedding::MAX_BATCH;
/// Chats decoding together. On a 2-core CPU, 8 gave 2.6 times the tokens per second of one at a
/// time (BENCHMARKS.md, "Continuous batching").
pub const GENERATE_BATCH: usize = 8;
/// Chats waiting for a seat. Short: a generation takes seconds, and a client is better served by
/// another provider than by a long wait here.
const GENERATE_QUEUE: usize = 8;

/// Why a model could not be loaded or a query could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A model name this build does not know.
    #[error("unknown model {name:?}: this build serves {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The names it knows, for the message.
        known: String,
    },
    /// A known model failed to load (missing weights: run `scripts/fetch-models`).
    #[error("cannot load {model}: {reason}")]
    Load {
        /// The model.
        model: String,
        /// Why.
        reason: String,
    },
    /// The runner does not hold this (task, model).
    #[error("this provider does not serve {task} model {model:?}")]
    NotServed {
        /// The task asked for.
        task: Task,
        /// The model asked for.
        model: String,
    },
    /// The input payload does not decode or breaks the task's bounds.
    #[error("bad input: {0}")]
    BadInput(String),
    /// The model's queue is full.
    #[error("the model is busy: its queue is full")]
    Busy,
    /// The deadline passed before the answer was ready.
    #[error("the deadline passed before the model answered")]
    Expired,
    /// The model or its worker failed.
    #[error("the model failed: {0}")]
    Failed(String),
}

impl RunnerError {
    /// What the client is told.
    pub fn kind(&self) -> QueryErrorKind {
        match self {
            RunnerError::UnknownModel { .. } | RunnerError::NotServed { .. } => {
                QueryErrorKind::UnknownModel
            }
            RunnerError::BadInput(_) => QueryErrorKind::BadInput,
            RunnerError::Busy => QueryErrorKind::Busy,
            RunnerError::Expired => QueryErrorKind::Expired,
            RunnerError::Load { .. } | RunnerError::Failed(_) => QueryErrorKind::Internal,
        }
    }
}

impl From<FairError> for RunnerError {
    fn from(e: FairError) -> Self {
        match e {
            FairError::Busy => RunnerError::Busy,
            FairError::Expired => RunnerError::Expired,
        }
    }
}

impl From<SchedulerError> for RunnerError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::Busy => RunnerError::Busy,
            SchedulerError::DeadlineExceeded => RunnerError::Expired,
            SchedulerError::Stopped | SchedulerError::BatchFailed(_) => {
                RunnerError::Failed(e.to_string())
            }
        }
    }
}

/// One text's embedding and its token count, or why it failed.
type EmbedResult = Result<(Vec<f32>, u32), String>;

/// A loaded model.
#[derive(Debug)]
enum Engine {
    Embed(Scheduler<String, EmbedResult>),
    Generate(GenerationScheduler),
}

/// Who a query is run for, in the fair queue: a client's key, or `None` for [`ModelRunner::run`].
pub type ClientId = Option<PublicKey>;

#[derive(Debug)]
struct Loaded {
    name: String,
    task: Task,
    engine: Engine,
    /// The per-client queues in front of `engine`.
    fair: FairQueue<ClientId>,
}

/// One query's answer and its place in its model's dispatch order.
#[derive(Debug)]
pub struct Ran {
    /// The encoded output payload.
    pub output: Vec<u8>,
    /// The query's place in the order the model's fair queue let queries through (0 first).
    pub sequence: u64,
    /// How many other queries the fair queue let through to the model between this one's arrival
    /// and its own dispatch (0 if it went straight through).
    pub waited_behind: u64,
}

/// The loaded models. Cheap to clone: clones share the worker threads, which stop when the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub struct ModelRunner {
    models: Arc<Vec<Loaded>>,
    fault: Option<Fault>,
    /// Where the embedding worker reports its batch sizes, once someone asks
    /// ([`ModelRunner::observe_batches`]); shared with the worker thread.
    batch_metrics: Arc<OnceLock<crate::metrics::Metrics>>,
}

/// A deliberate misbehaviour, for chaos tests of validators (`agora serve --fault`, hidden): an
/// honest miner never sets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Adds noise (uniform in ±0.1 per component) to every embedding, so each vector's cosine to the
    /// true one falls far below what a validator accepts.
    WrongEmbeddings,
}

/// Adds `Fault::WrongEmbeddings` noise to an encoded [`EmbedOutput`]. The noise comes from the
/// clock: it only has to be wrong, not reproducible.
fn corrupt_embeddings(bytes: Vec<u8>) -> Result<Vec<u8>, RunnerError> {
    let mut output =
        EmbedOutput::from_bytes(&bytes).map_err(|e| RunnerError::Failed(e.to_string()))?;
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    for value in output.vectors.iter_mut().flatten() {
        // xorshift64: enough randomness for noise.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let unit = (state >> 11) as f32 / (1u64 << 53) as f32;
        *value += (unit - 0.5) * 0.2;
    }
    output
        .to_bytes()
        .map_err(|e| RunnerError::Failed(e.to_string()))
}

fn known_names() -> String {
    KNOWN_MODELS
        .iter()
        .map(|(name, task)| format!("{name} ({task})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ModelRunner {
    /// Loads `models` (names from [`KNOWN_MODELS`]) on the device `device` leads to, telling
    /// `progress` what it is doing (`loading NAME ...`, `loaded in X s on DEVICE`). Every name is
    /// checked before anything loads, so a typo fails at once.
    pub fn load(
        models: &[String],
        device: DevicePreference,
        mut progress: impl FnMut(&str),
    ) -> Result<Self, RunnerError> {
        let mut wanted: Vec<(&str, Task)> = Vec::new();
        for name in models {
            let Some(&(known, task)) = KNOWN_MODELS.iter().find(|(n, _)| *n == name.as_str())
            else {
                return Err(RunnerError::UnknownModel {
                    name: name.clone(),
                    known: known_names(),
                });
            };
            if !wanted.iter().any(|(n, _)| *n == known) {
                wanted.push((known, task));
            }
        }
        let mut loaded = Vec::new();
        let batch_metrics = Arc::new(OnceLock::new());
        for (name, task) in wanted {
            progress(&format!("loading {name} ..."));
            let started = Instant::now();
            let load_error = |reason: String| RunnerError::Load {
                model: name.to_string(),
                reason,
            };
            let fair = FairQueue::new(match task {
                Task::Embed => FairConfig {
                    in_flight: EMBED_IN_FLIGHT,
                    capacity: EMBED_QUEUE,
                    quantum: EMBED_QUANTUM,
                },
                Task::Generate => FairConfig {
                    in_flight: GENERATE_BATCH,
                    capacity: GENERATE_QUEUE,
                    quantum: 1,
                },
            });
            let (engine, device_name) = match task {
                Task::Embed => {
                    let embedder = SentenceEmbedder::load(
                        &agora_inference::model_cache::model_dir(name),
                        device,
                    )
                    .map_err(|e| load_error(e.to_string()))?;
                    let device_name = embedder.device().name();
                    (
                        Engine::Embed(embed_scheduler(embedder, Arc::clone(&batch_metrics))?),
                        device_name,
                    )
                }
                Task::Generate => {
                    let generator = Generator::load(&default_model_path(), device)
                        .map_err(|e| load_error(e.to_string()))?;
                    let device_name = generator.device().name();
                    (
                        Engine::Generate(generate_scheduler(generator)?),
                        device_name,
                    )
                }
            };
            progress(&format!(
                "loaded in {:.1} s on {device_name}",
                started.elapsed().as_secs_f64()
            ));
            loaded.push(Loaded {
                name: name.to_string(),
                task,
                engine,
                fair,
            });
        }
        Ok(Self {
            models: Arc::new(loaded),
            fault: None,
            batch_metrics,
        })
    }

    /// This runner with a deliberate fault (chaos testing only; see [`Fault`]).
    pub fn with_fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault;
        self
    }

    /// Reports every embedding batch's size to `metrics` from now on (the first call wins: one
    /// runner, one registry).
    pub fn observe_batches(&self, metrics: &crate::metrics::Metrics) {
        let _ = self.batch_metrics.set(metrics.clone());
    }

    /// What this runner serves: (task, model) pairs, in load order.
    pub fn serves(&self) -> Vec<(Task, String)> {
        self.models
            .iter()
            .map(|m| (m.task, m.name.clone()))
            .collect()
    }

    /// Requests waiting for `model` (texts for embedding, chats for generation), in its fair queue
    /// and in its scheduler's queue; 0 for a model not served.
    pub fn queue_depth(&self, model: &str) -> usize {
        let Some(loaded) = self.models.iter().find(|m| m.name == model) else {
            return 0;
        };
        let scheduled = match &loaded.engine {
            Engine::Embed(s) => s.stats().requests().queued(),
            Engine::Generate(s) => s.stats().requests().queued(),
        };
        loaded.fair.stats().waiting + scheduled
    }

    /// The state of `model`'s fair queue; `None` for a model not served.
    pub fn fair_stats(&self, model: &str) -> Option<FairStats> {
        self.models
            .iter()
            .find(|m| m.name == model)
            .map(|m| m.fair.stats())
    }

    /// Runs one query as one anonymous client: see [`ModelRunner::run_for`].
    pub async fn run(
        &self,
        task: Task,
        model: &str,
        input: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, RunnerError> {
        self.run_for(None, task, model, input, deadline)
            .await
            .map(|ran| ran.output)
    }

    /// Runs one query for `client`: decodes `input` as `task`'s payload, waits for `client`'s turn
    /// in `model`'s fair queue, runs `model` on it before `deadline`, and returns the encoded output
    /// payload with its place in the dispatch order.
    pub async fn run_for(
        &self,
        client: ClientId,
        task: Task,
        model: &str,
        input: &[u8],
        deadline: Instant,
    ) -> Result<Ran, RunnerError> {
        let loaded = self
            .models
            .iter()
            .find(|m| m.name == model && m.task == task)
            .ok_or_else(|| RunnerError::NotServed {
                task,
                model: model.to_string(),
            })?;
        // Decoded before queueing: bad input is refused at once, and the cost is known.
        let (output, permit) = match &loaded.engine {
            Engine::Embed(scheduler) => {
                let input = EmbedInput::from_bytes(input)
                    .map_err(|e| RunnerError::BadInput(e.to_string()))?;
                let permit = loaded
                    .fair
                    .acquire(client, input.texts.len(), deadline)
                    .await?;
                let output = embed(scheduler, input, deadline).await?;
                let output = match self.fault {
                    Some(Fault::WrongEmbeddings) => corrupt_embeddings(output)?,
                    None => output,
                };
                (output, permit)
            }
            Engine::Generate(scheduler) => {
                let input = GenerateInput::from_bytes(input)
                    .map_err(|e| RunnerError::BadInput(e.to_string()))?;
                let permit = loaded.fair.acquire(client, 1, deadline).await?;
                let output = generate(scheduler, &input, deadline)
                    .await?
                    .to_bytes()
                    .map_err(|e| RunnerError::Failed(e.to_string()))?;
                (output, permit)
            }
        };
        Ok(Ran {
            output,
            sequence: permit.sequence(),
            waited_behind: permit.waited_behind(),
        })
    }
}

fn embed_scheduler(
    embedder: SentenceEmbedder,
    batch_metrics: Arc<OnceLock<crate::metrics::Metrics>>,
) -> Result<Scheduler<String, EmbedResult>, RunnerError> {
    let config = SchedulerConfig::default()
        .with_max_batch(embedding::MAX_BATCH)
        .with_queue_capacity(EMBED_QUEUE);
    Scheduler::spawn("agora-embed", config, move |texts: Vec<String>| {
        if let Some(metrics) = batch_metrics.get() {
            metrics.embed_batch(texts.len());
        }
        let count = |t: &String| {
            embedder
                .tokenize(t)
                .map(|ids| u32::try_from(ids.len()).unwrap_or(u32::MAX))
                .map_err(|e| e.to_string())
        };
        match embedder.embed_batch(&texts) {
            Ok(vectors) => texts
                .iter()
                .zip(vectors)
                .map(|(t, v)| Ok((v, count(t)?)))
                .collect(),
            // A failure of the whole batch is retried text by text, so one bad input does not fail
            // the queries it was batched with.
            Err(_) => texts
                .iter()
                .map(|t| {
                    let v = embedder.embed(t).map_err(|e| e.to_string())?;
                    Ok((v, count(t)?))
                })
                .collect(),
        }
    })
    .map_err(|e| RunnerError::Load {
        model: MINILM.to_string(),
        reason: format!("cannot start its worker thread: {e}"),
    })
}

async fn embed(
    scheduler: &Scheduler<String, EmbedResult>,
    input: EmbedInput,
    deadline: Instant,
) -> Result<Vec<u8>, RunnerError> {
    // Queue every text first, so they can share batches with each other and with other queries;
    // dropping the tickets on an early return cancels the rest.
    let tickets: Vec<_> = input
        .texts
        .into_iter()
        .map(|text| scheduler.submit_with_deadline(text, deadline))
        .collect();
    let mut vectors = Vec::with_capacity(tickets.len());
    let mut tokens = 0u32;
    for ticket in tickets {
        let (vector, count) = ticket.await?.map_err(RunnerError::Failed)?;
        vectors.push(vector);
        tokens = tokens.saturating_add(count);
    }
    let output = EmbedOutput {
        dimension: u32::try_from(embedding::DIMENSION).unwrap_or(u32::MAX),
        vectors,
        tokens,
    };
    output
        .to_bytes()
        .map_err(|e| RunnerError::Failed(e.to_string()))
}

fn generate_scheduler(generator: Generator) -> Result<GenerationScheduler, RunnerError> {
    let config = SchedulerConfig::default()
        .with_max_batch(GENERATE_BATCH)
        .with_queue_capacity(GENERATE_QUEUE);
    GenerationScheduler::spawn_generator("agora-generate", generator, config).map_err(|e| {
        RunnerError::Load {
            model: SMOLLM2.to_string(),
            reason: format!("cannot start its worker thread: {e}"),
        }
    })
}

/// One chat through the batching generator.
async fn generate(
    scheduler: &GenerationScheduler,
    input: &GenerateInput,
    deadline: Instant,
) -> Result<GenerateOutput, RunnerError> {
    let messages: Vec<ChatMessage> = input
        .messages
        .iter()
        .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
        .collect();
    let sampling = match input.sampling {
        Sampling::Greedy => SamplingParams::greedy(),
        Sampling::Seeded {
            temperature_milli,
            top_p_milli,
            seed,
        } => SamplingParams {
            temperature: temperature_milli as f32 / 1000.0,
            top_p: top_p_milli as f32 / 1000.0,
            seed,
        },
    };
    let params = GenerationParams {
        max_tokens: input.max_tokens as usize,
        sampling,
        stop: input.stop.clone(),
        stop_on_eos: true,
    };
    let out = scheduler
        .submit_chat_with_deadline(&messages, params, deadline)
        .await
        .map_err(|e| match e {
            RequestError::Scheduler(e) => RunnerError::from(e),
            RequestError::Generation(
                e @ (GenerationError::ContextFull { .. }
                | GenerationError::EmptyPrompt
                | GenerationError::InvalidSampling(_)
                | GenerationError::TokenOutOfRange { .. }
                | GenerationError::Tokenizer(_)),
            ) => RunnerError::BadInput(e.to_string()),
            RequestError::Generation(other) => RunnerError::Failed(other.to_string()),
        })?;
    Ok(GenerateOutput {
        text: out.text,
        token_ids: out.token_ids,
        prompt_tokens: u32::try_from(out.prompt_tokens).unwrap_or(u32::MAX),
        finish: match out.finish {
            FinishReason::Eos => Finish::Eos,
            FinishReason::Stop(_) => Finish::Stop,
            FinishReason::MaxTokens => Finish::Length,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn unknown_models_are_named_with_the_known_ones() {
        let err =
            ModelRunner::load(&["gpt-9".to_string()], DevicePreference::Cpu, |_| {}).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("gpt-9"), "{text}");
        assert!(text.contains(MINILM) && text.contains(SMOLLM2), "{text}");
        assert_eq!(err.kind(), QueryErrorKind::UnknownModel);
    }

    #[test]
    fn scheduler_errors_map_to_what_the_client_can_do() {
        assert_eq!(
            RunnerError::from(SchedulerError::Busy).kind(),
            QueryErrorKind::Busy
        );
        assert_eq!(
            RunnerError::from(SchedulerError::DeadlineExceeded).kind(),
            QueryErrorKind::Expired
        );
        assert_eq!(
            RunnerError::from(SchedulerError::Stopped).kind(),
            QueryErrorKind::Internal
        );
        assert_eq!(
            RunnerError::BadInput(String::new()).kind(),
            QueryErrorKind::BadInput
        );
    }

    /// Concurrent chats share the generator's batch and each gets the tokens it gets alone.
    #[test]
    fn concurrent_chats_each_get_their_own_greedy_tokens() {
        let runner =
            ModelRunner::load(&[SMOLLM2.to_string()], DevicePreference::Cpu, |_| {}).unwrap();
        let chats = [
            "What is the capital of France?",
            "Write a haiku about the ocean.",
            "List three uses for a paperclip.",
        ];
        let input = |chat: &str, max_tokens: u32| GenerateInput {
            messages: vec![agora_protocols::ChatMessage {
                role: "user".to_string(),
                content: chat.to_string(),
            }],
            max_tokens,
            sampling: Sampling::Greedy,
            stop: Vec::new(),
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(300);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answers = rt.block_on(async {
            let runs = chats.iter().enumerate().map(|(i, chat)| {
                let bytes = input(chat, 6 + 2 * i as u32).to_bytes().unwrap();
                let runner = runner.clone();
                async move { runner.run(Task::Generate, SMOLLM2, &bytes, deadline).await }
            });
            let handles: Vec<_> = runs.map(tokio::spawn).collect();
            let mut answers = Vec::new();
            for h in handles {
                answers.push(GenerateOutput::from_bytes(&h.await.unwrap().unwrap()).unwrap());
            }
            answers
        });

        let local = Generator::load(&default_model_path(), DevicePreference::Cpu).unwrap();
        for (i, (chat, answer)) in chats.iter().zip(&answers).enumerate() {
            let prompt = local
                .tokenizer()
                .apply_chat_template(&[ChatMessage::new("user", *chat)], true);
            let params = GenerationParams {
                max_tokens: 6 + 2 * i,
                ..GenerationParams::default()
            };
            let alone = local.generate_text(&prompt, &params, |_| {}).unwrap();
            assert_eq!(answer.token_ids, alone.token_ids, "{chat:?}");
            assert_eq!(answer.text, alone.text, "{chat:?}");
        }

        // Too long for the context: the client's mistake, not the miner's.
        let mut long = input(&"word ".repeat(9000), 8);
        long.max_tokens = 8;
        let bytes = long.to_bytes().unwrap();
        let err = rt
            .block_on(runner.run(Task::Generate, SMOLLM2, &bytes, deadline))
            .unwrap_err();
        assert_eq!(err.kind(), QueryErrorKind::BadInput, "{err}");
    }
}
