//! Continuous (iteration-level) batching for text generation.
//!
//! A generation is hundreds of model steps, each of which reads every weight once (about 540 MB in
//! f32 for SmolLM2-135M). On a memory-bound CPU a step with eight sequences costs little more than a
//! step with one, so running the sequences of concurrent requests together multiplies throughput.
//! Batching whole requests (as [`crate::scheduler`] does for embeddings) would make every request
//! wait for the longest in its batch; here the batch is re-formed at every step instead:
//!
//! - up to `max_batch` sequences decode together, each with its own KV cache and positions
//!   ([`Llama::forward_batch`](super::Llama::forward_batch) stacks their rows for the weight products and runs attention per
//!   sequence, so nothing is padded);
//! - new requests join between steps: their prompts run in the same step as the other sequences'
//!   next tokens (up to [`PREFILL_TOKENS_PER_STEP`] prompt tokens a step, so a burst of long prompts
//!   does not stall the running ones for long). When nothing is running, the first request waits up
//!   to `max_wait` for company, so a burst starts as one batch;
//! - each sequence ends on its own (end-of-sequence token, stop string, token budget) and frees its
//!   seat at once;
//! - every request has a deadline: past it, the sequence is dropped at the next step and the caller's
//!   ticket resolves to [`SchedulerError::DeadlineExceeded`] (at the deadline itself when polled in a
//!   tokio runtime);
//! - a caller that goes away (drops its [`GenerationTicket`]) cancels its request: a waiting one never
//!   runs, a running one leaves the batch at the next step;
//! - the queue of requests waiting for a seat is bounded (`queue_capacity`): beyond it
//!   [`GenerationScheduler::submit`] answers [`SchedulerError::Busy`] at once;
//! - text is streamed per request ([`GenerationTicket::next_text`]) through a small bounded channel;
//!   a reader that falls behind never blocks the batch: its text waits in the sequence and goes out
//!   with the next piece (or in the final answer).
//!
//! Every sequence's tokens are the ones it would get alone: sampling is per sequence (its own seeded
//! generator), and the model's rows do not mix (see [`Llama::forward_batch`](super::Llama::forward_batch) for the one caveat on the
//! last bits of the logits, and `tests/generation_batch.rs` for the check against the reference
//! tokens).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use agora_inference::generation::{
//!     ChatMessage, GenerationParams, GenerationScheduler, TextGenerator, default_model_path,
//! };
//! use agora_inference::scheduler::SchedulerConfig;
//! use burn::backend::Flex;
//!
//! let generator = TextGenerator::<Flex>::load(&default_model_path(), &Default::default())?;
//! let config = SchedulerConfig::default().with_max_batch(8).with_queue_capacity(16);
//! let scheduler = GenerationScheduler::spawn("generate", generator, config)?;
//! let messages = [ChatMessage::new("user", "Write a haiku about the sea.")];
//! let mut ticket = scheduler.submit_chat(&messages, GenerationParams::default());
//! while let Some(piece) = ticket.next_text().await {
//!     print!("{piece}");
//! }
//! let generation = ticket.await?;
//! println!("\n({} tokens, {:?})", generation.token_ids.len(), generation.finish);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use tokio::sync::{mpsc, oneshot};

use super::model::{KvCache, LlamaConfig};
use super::tokenizer::{ChatMessage, Tokenizer};
use super::{Decoding, Generation, GenerationError, GenerationParams, Generator, TextGenerator};
use crate::scheduler::{RequestCounters, SchedulerConfig, SchedulerError};

/// Most prompt tokens prefilled in one step (a single longer prompt still runs, alone among the new
/// ones): bounds how long one step, and so every running sequence's next token, can be held up by
/// newcomers.
pub const PREFILL_TOKENS_PER_STEP: usize = 512;

/// Text pieces a ticket's stream holds before the worker keeps further text back for it.
const STREAM_PIECES: usize = 64;

/// Why a generation request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The scheduler refused it or could not finish it: busy, deadline, stopped, failed step.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The request itself is invalid (empty prompt, too long for the context, bad sampling
    /// parameters, an id outside the vocabulary, a prompt the tokenizer rejects).
    #[error(transparent)]
    Generation(#[from] GenerationError),
}

/// Counters of the generation batcher, for capability adverts (queue depth) and metrics.
#[derive(Debug, Default)]
pub struct GenerationStats {
    requests: RequestCounters,
    active: AtomicUsize,
    steps: AtomicU64,
    tokens: AtomicU64,
}

impl GenerationStats {
    /// What became of the requests (queued: waiting for a seat in the batch; expired and
    /// cancelled: dropped while waiting or running).
    pub fn requests(&self) -> &RequestCounters {
        &self.requests
    }
    /// Sequences decoding now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
    /// Model steps run so far (each serves every active sequence).
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }
    /// Tokens generated so far, over all requests.
    pub fn tokens(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }
}

/// What the worker hands back at the end: the generation, and the text not yet sent as a piece.
#[derive(Debug)]
struct Finished {
    generation: Generation,
    tail: String,
}

type Answer = Result<Finished, RequestError>;

/// A validated request waiting for a seat.
#[derive(Debug)]
struct Request {
    prompt_ids: Vec<u32>,
    decoding: Decoding,
    deadline: Instant,
    pieces: mpsc::Sender<String>,
    done: oneshot::Sender<Answer>,
}

#[derive(Debug)]
struct Queue {
    waiting: VecDeque<Request>,
    /// False once every handle is gone (or the worker has died): no new requests.
    open: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    stats: GenerationStats,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is only pushed to and popped from under the lock; a panic elsewhere cannot leave
        // it half-changed, so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes the queue when the last [`GenerationScheduler`] clone is dropped.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    tokenizer: Arc<Tokenizer>,
    config: LlamaConfig,
    default_timeout: Duration,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().open = false;
        self.shared.wake.notify_all();
    }
}

/// A cloneable handle to a generation worker that batches concurrent requests step by step (see the
/// [module documentation](self)). The worker stops when the last handle is dropped, after finishing
/// the requests it has.
#[derive(Debug, Clone)]
pub struct GenerationScheduler {
    handle: Arc<Handle>,
}

impl GenerationScheduler {
    /// Starts the worker thread (named `name`) that runs `generator` (owned, or shared with other
    /// users through an `Arc`: the worker only reads it). `config.max_batch` bounds the
    /// sequences decoding together, `config.queue_capacity` the requests waiting for a seat,
    /// `config.max_wait` how long an idle worker waits for more requests after a first one, and
    /// `config.default_timeout` is the deadline of [`GenerationScheduler::submit`]. The error is the OS
    /// refusing a thread.
    pub fn spawn<B: Backend>(
        name: &str,
        generator: impl Into<Arc<TextGenerator<B>>>,
        config: SchedulerConfig,
    ) -> Result<Self, std::io::Error> {
        let generator: Arc<TextGenerator<B>> = generator.into();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                open: true,
            }),
            wake: Condvar::new(),
            stats: GenerationStats::default(),
            capacity: config.queue_capacity.max(1),
        });
        let handle = Handle {
            shared: Arc::clone(&shared),
            tokenizer: Arc::clone(&generator.tokenizer),
            config: generator.model.config().clone(),
            default_timeout: config.default_timeout,
        };
        let worker = Worker {
            shared,
            generator,
            max_batch: config.max_batch.max(1),
            max_wait: config.max_wait,
        };
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || worker.run())?;
        Ok(Self {
            handle: Arc::new(handle),
        })
    }

    /// [`GenerationScheduler::spawn`] for a [`Generator`] on whichever device it was loaded.
    pub fn spawn_generator(
        name: &str,
        generator: Generator,
        config: SchedulerConfig,
    ) -> Result<Self, std::io::Error> {
        match generator {
            Generator::Cpu(g) => Self::spawn(name, g, config),
            #[cfg(feature = "cuda")]
            Generator::Cuda(g, _) => Self::spawn(name, g, config),
        }
    }

    /// The tokenizer (shared with the worker), for building prompts.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.handle.tokenizer
    }

    /// The scheduler's counters.
    pub fn stats(&self) -> &GenerationStats {
        &self.handle.shared.stats
    }

    /// Queues a generation from prompt ids with the default deadline.
    ///
    /// The request is checked and queued before this returns, so an invalid request or
    /// [`SchedulerError::Busy`] is the ticket's answer at once. Dropping the ticket cancels it.
    pub fn submit(&self, prompt_ids: Vec<u32>, params: GenerationParams) -> GenerationTicket {
        let deadline = Instant::now() + self.handle.default_timeout;
        self.submit_with_deadline(prompt_ids, params, deadline)
    }

    /// Queues a chat (formatted with the model's chat template, ready for the assistant's turn) with
    /// the default deadline.
    pub fn submit_chat(
        &self,
        messages: &[ChatMessage],
        params: GenerationParams,
    ) -> GenerationTicket {
        let deadline = Instant::now() + self.handle.default_timeout;
        self.submit_chat_with_deadline(messages, params, deadline)
    }

    /// Queues a chat with its own deadline.
    pub fn submit_chat_with_deadline(
        &self,
        messages: &[ChatMessage],
        params: GenerationParams,
        deadline: Instant,
    ) -> GenerationTicket {
        let prompt = self.handle.tokenizer.apply_chat_template(messages, true);
        match self.handle.tokenizer.encode(&prompt) {
            Ok(ids) => self.submit_with_deadline(ids, params, deadline),
            Err(e) => GenerationTicket::answered(Err(GenerationError::from(e).into()), deadline),
        }
    }

    /// Queues a generation from prompt ids with its own deadline.
    pub fn submit_with_deadline(
        &self,
        prompt_ids: Vec<u32>,
        params: GenerationParams,
        deadline: Instant,
    ) -> GenerationTicket {
        let decoding = match Decoding::new(
            &self.handle.tokenizer,
            &self.handle.config,
            &prompt_ids,
            &params,
        ) {
            Ok(d) => d,
            Err(e) => return GenerationTicket::answered(Err(e.into()), deadline),
        };
        let (pieces_tx, pieces_rx) = mpsc::channel(STREAM_PIECES);
        let (done_tx, done_rx) = oneshot::channel();
        let request = Request {
            prompt_ids,
            decoding,
            deadline,
            pieces: pieces_tx,
            done: done_tx,
        };
        let shared = &self.handle.shared;
        {
            let mut queue = shared.lock();
            if !queue.open {
                return GenerationTicket::answered(Err(SchedulerError::Stopped.into()), deadline);
            }
            if queue.waiting.len() >= shared.capacity {
                drop(queue);
                shared.stats.requests.add_rejected(1);
                return GenerationTicket::answered(Err(SchedulerError::Busy.into()), deadline);
            }
            queue.waiting.push_back(request);
            shared.stats.requests.set_queued(queue.waiting.len());
        }
        shared.wake.notify_one();
        GenerationTicket {
            pieces: Some(pieces_rx),
            state: TicketState::Waiting(done_rx),
            tail: None,
            deadline,
            timer: None,
        }
    }
}

#[derive(Debug)]
enum TicketState {
    Waiting(oneshot::Receiver<Answer>),
    Done(Option<Result<Generation, RequestError>>),
}

/// One request's answer: a stream of text pieces ([`GenerationTicket::next_text`]) and, as a future,
/// the whole [`Generation`]. Dropping it cancels the request.
///
/// The deadline is enforced on both sides: the worker drops an expired sequence at its next step, and
/// the ticket resolves to [`SchedulerError::DeadlineExceeded`] at the deadline when polled inside a
/// tokio runtime.
#[derive(Debug)]
pub struct GenerationTicket {
    pieces: Option<mpsc::Receiver<String>>,
    state: TicketState,
    /// Text the worker held back for this ticket when the generation ended, not yet streamed.
    tail: Option<String>,
    deadline: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl GenerationTicket {
    fn answered(answer: Result<Generation, RequestError>, deadline: Instant) -> Self {
        Self {
            pieces: None,
            state: TicketState::Done(Some(answer)),
            tail: None,
            deadline,
            timer: None,
        }
    }

    /// The next piece of text, as soon as it is final (whole characters, never text a stop string
    /// later removes); `None` once the text is complete or the request has failed (await the ticket
    /// for the [`Generation`] or the error). The pieces add up to [`Generation::text`].
    pub async fn next_text(&mut self) -> Option<String> {
        std::future::poll_fn(|cx| self.poll_next_text(cx)).await
    }

    fn poll_next_text(&mut self, cx: &mut Context<'_>) -> Poll<Option<String>> {
        if let Some(pieces) = &mut self.pieces {
            match pieces.poll_recv(cx) {
                Poll::Ready(Some(piece)) => return Poll::Ready(Some(piece)),
                // The sequence has ended: what is left comes with the final answer.
                Poll::Ready(None) => self.pieces = None,
                Poll::Pending => {
                    if self.poll_deadline(cx) {
                        return Poll::Ready(None);
                    }
                    return Poll::Pending;
                }
            }
        }
        match self.poll_done(cx) {
            Poll::Ready(()) => Poll::Ready(self.tail.take().filter(|t| !t.is_empty())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the deadline has passed (then the request is given up: the worker sees the ticket's
    /// receiver gone and frees the seat).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        if self.timer.is_none() && tokio::runtime::Handle::try_current().is_ok() {
            self.timer = Some(Box::pin(tokio::time::sleep_until(self.deadline.into())));
        }
        let expired = self
            .timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready());
        if expired {
            self.pieces = None;
            self.state = TicketState::Done(Some(Err(SchedulerError::DeadlineExceeded.into())));
        }
        expired
    }

    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let TicketState::Waiting(rx) = &mut self.state else {
            return Poll::Ready(());
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(answer) => {
                self.state = TicketState::Done(Some(self.settle(answer)));
                Poll::Ready(())
            }
            Poll::Pending if self.poll_deadline(cx) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn settle(
        &mut self,
        answer: Result<Answer, oneshot::error::RecvError>,
    ) -> Result<Generation, RequestError> {
        match answer {
            Ok(Ok(finished)) => {
                self.tail = Some(finished.tail);
                Ok(finished.generation)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SchedulerError::Stopped.into()),
        }
    }

    /// Waits for the whole generation on the current thread, for callers outside async code (the
    /// deadline is then enforced by the worker alone).
    pub fn wait(mut self) -> Result<Generation, RequestError> {
        match std::mem::replace(&mut self.state, TicketState::Done(None)) {
            TicketState::Done(answer) => answer.unwrap_or(Err(SchedulerError::Stopped.into())),
            TicketState::Waiting(rx) => {
                let answer = rx.blocking_recv();
                self.settle(answer)
            }
        }
    }
}

impl Future for GenerationTicket {
    type Output = Result<Generation, RequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // No self-references: the receivers and the boxed timer are all Unpin.
        let this = self.get_mut();
        match this.poll_done(cx) {
            Poll::Ready(()) => match &mut this.state {
                TicketState::Done(answer) => {
                    Poll::Ready(answer.take().unwrap_or(Err(SchedulerError::Stopped.into())))
                }
                TicketState::Waiting(_) => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Answers [`SchedulerError::DeadlineExceeded`] through `done`, which is about to be dropped with
/// its request (`retain` lends it by reference: a closed stand-in takes its place).
fn expire(done: &mut oneshot::Sender<Answer>) {
    let (stand_in, _) = oneshot::channel();
    let _ = std::mem::replace(done, stand_in).send(Err(SchedulerError::DeadlineExceeded.into()));
}

/// A sequence with a seat in the batch.
struct Active<B: Backend> {
    decoding: Decoding,
    cache: KvCache<B>,
    /// What the next step feeds: the prompt, then each generated token.
    next: Vec<u32>,
    deadline: Instant,
    pieces: mpsc::Sender<String>,
    done: oneshot::Sender<Answer>,
    /// Final text the stream has not taken yet.
    pending: String,
}

impl<B: Backend> Active<B> {
    fn gone(&self) -> bool {
        self.done.is_closed()
    }

    /// Sends the pending text if the stream has room (else it waits for the next step or the end).
    fn stream(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.pieces.try_send(std::mem::take(&mut self.pending)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(text)) => self.pending = text,
            // The caller reads only the final answer, which has all the text.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn finish(mut self, shared: &Shared) {
        let generation = self.decoding.finish(&mut self.pending);
        shared.stats.requests.add_served(1);
        let _ = self.done.send(Ok(Finished {
            generation,
            tail: self.pending,
        }));
    }
}

struct Worker<B: Backend> {
    shared: Arc<Shared>,
    generator: Arc<TextGenerator<B>>,
    max_batch: usize,
    max_wait: Duration,
}

impl<B: Backend> Drop for Worker<B> {
    /// Runs when the worker ends, normally (every handle gone, nothing left) or by a panic: closes the
    /// queue so that new requests are answered `Stopped` at once, and drops what still waits, which
    /// answers those tickets `Stopped` too.
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.open = false;
        queue.waiting.clear();
        self.shared.stats.requests.set_queued(0);
    }
}

impl<B: Backend> Worker<B> {
    fn run(self) {
        let mut active: Vec<Active<B>> = Vec::new();
        while self.admit(&mut active) {
            self.drop_gone(&mut active);
            if !active.is_empty() {
                active = self.step(active);
            }
            self.shared
                .stats
                .active
                .store(active.len(), Ordering::Relaxed);
        }
    }

    /// Moves waiting requests into free seats. With nothing running, blocks for a first request and
    /// then up to `max_wait` for more. Returns false when the queue is closed and nothing is left.
    fn admit(&self, active: &mut Vec<Active<B>>) -> bool {
        let mut queue = self.shared.lock();
        self.purge(&mut queue);
        if active.is_empty() {
            while queue.waiting.is_empty() {
                if !queue.open {
                    return false;
                }
                queue = self
                    .shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                self.purge(&mut queue);
            }
            let opened = Instant::now();
            while queue.waiting.len() < self.max_batch && queue.open {
                let left = self.max_wait.saturating_sub(opened.elapsed());
                if left.is_zero() {
                    break;
                }
                queue = self
                    .shared
                    .wake
                    .wait_timeout(queue, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            self.purge(&mut queue);
        }
        let mut prefill = 0usize;
        while active.len() < self.max_batch {
            let Some(front) = queue.waiting.front() else {
                break;
            };
            let len = front.prompt_ids.len();
            if prefill > 0 && prefill.saturating_add(len) > PREFILL_TOKENS_PER_STEP {
                break;
            }
            let Some(request) = queue.waiting.pop_front() else {
                break;
            };
            if request.decoding.is_done() {
                // A zero token budget: answered without running the prompt.
                let seat = Active {
                    decoding: request.decoding,
                    cache: self.generator.model.new_cache(),
                    next: Vec::new(),
                    deadline: request.deadline,
                    pieces: request.pieces,
                    done: request.done,
                    pending: String::new(),
                };
                seat.finish(&self.shared);
                continue;
            }
            prefill += len;
            active.push(Active {
                decoding: request.decoding,
                cache: self.generator.model.new_cache(),
                next: request.prompt_ids,
                deadline: request.deadline,
                pieces: request.pieces,
                done: request.done,
                pending: String::new(),
            });
        }
        self.shared.stats.requests.set_queued(queue.waiting.len());
        !active.is_empty() || queue.open || !queue.waiting.is_empty()
    }

    /// Drops waiting requests whose caller left or whose deadline passed.
    fn purge(&self, queue: &mut Queue) {
        let now = Instant::now();
        let stats = &self.shared.stats;
        queue.waiting.retain_mut(|r| {
            if r.done.is_closed() {
                stats.requests.add_cancelled(1);
                false
            } else if now >= r.deadline {
                stats.requests.add_expired(1);
                expire(&mut r.done);
                false
            } else {
                true
            }
        });
        stats.requests.set_queued(queue.waiting.len());
    }

    /// Drops running sequences whose caller left or whose deadline passed.
    fn drop_gone(&self, active: &mut Vec<Active<B>>) {
        let now = Instant::now();
        let stats = &self.shared.stats;
        active.retain_mut(|a| {
            if a.gone() {
                stats.requests.add_cancelled(1);
                false
            } else if now >= a.deadline {
                stats.requests.add_expired(1);
                expire(&mut a.done);
                false
            } else {
                true
            }
        });
    }

    /// One model step for every seated sequence; returns the sequences still going.
    fn step(&self, mut active: Vec<Active<B>>) -> Vec<Active<B>> {
        let outcome = {
            let mut inputs: Vec<(&[u32], &mut KvCache<B>)> = active
                .iter_mut()
                .map(|a| (a.next.as_slice(), &mut a.cache))
                .collect();
            let model = &self.generator.model;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                model.forward_batch(&mut inputs)
            }))
        };
        self.shared.stats.steps.fetch_add(1, Ordering::Relaxed);
        let logits = match outcome {
            Ok(Ok(logits)) if logits.len() == active.len() => logits,
            failed => {
                let msg = match failed {
                    Ok(Ok(l)) => format!("{} logit rows for {} sequences", l.len(), active.len()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "the model panicked".to_owned(),
                };
                tracing::error!(%msg, sequences = active.len(), "generation step failed");
                for a in active {
                    let _ = a
                        .done
                        .send(Err(SchedulerError::BatchFailed(msg.clone()).into()));
                }
                return Vec::new();
            }
        };
        let mut going = Vec::with_capacity(active.len());
        for (mut a, logits) in active.into_iter().zip(logits) {
            let before = a.decoding.generated();
            let next = a
                .decoding
                .step(&self.generator.tokenizer, &logits, &mut a.pending);
            let produced = a.decoding.generated() - before;
            self.shared
                .stats
                .tokens
                .fetch_add(produced as u64, Ordering::Relaxed);
            match next {
                Some(token) => {
                    a.next.clear();
                    a.next.push(token);
                    a.stream();
                    going.push(a);
                }
                None => a.finish(&self.shared),
            }
        }
        going
    }
}
