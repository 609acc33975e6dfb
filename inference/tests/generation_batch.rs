//! Continuous batching for generation (`agora_inference::generation::batch`): the model's batched
//! step against the same sequences run alone, the reference prompts batched together (mixed prompt
//! lengths, joining at different steps) against Hugging Face transformers' tokens
//! (`data/generation_reference.json`) and against the one-at-a-time path, seeded sampling alone and
//! batched, stop strings and streaming in a batch, and the scheduler's promises: a dropped ticket frees
//! its seat, a full queue answers busy, deadlines, invalid requests, shutdown.
//!
//! The weights come from the model cache (`scripts/fetch-models`). Run in release:
//! `cargo test -p agora-inference --release --test generation_batch`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agora_inference::generation::{
    ChatMessage, FinishReason, Generation, GenerationError, GenerationParams, GenerationScheduler,
    GenerationTicket, RequestError, SamplingParams, TextGenerator, default_model_path,
};
use agora_inference::scheduler::{SchedulerConfig, SchedulerError};
use burn::backend::Flex;
use serde_json::Value;

fn generator() -> Arc<TextGenerator<Flex>> {
    static GENERATOR: OnceLock<Arc<TextGenerator<Flex>>> = OnceLock::new();
    Arc::clone(GENERATOR.get_or_init(|| {
        Arc::new(
            TextGenerator::load(&default_model_path(), &Default::default())
                .unwrap_or_else(|e| panic!("{e} (the generation tests need the cached weights)")),
        )
    }))
}

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/generation_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn scheduler(max_batch: usize, queue: usize) -> GenerationScheduler {
    let config = SchedulerConfig::default()
        .with_max_batch(max_batch)
        .with_queue_capacity(queue)
        .with_max_wait(Duration::from_millis(20))
        .with_default_timeout(Duration::from_secs(600));
    GenerationScheduler::spawn("test-generate", generator(), config).unwrap()
}

fn chat(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::new("user", text)]
}

/// Reads a ticket's stream to the end, then its answer.
async fn collect(mut ticket: GenerationTicket) -> (String, Result<Generation, RequestError>) {
    let mut streamed = String::new();
    while let Some(piece) = ticket.next_text().await {
        streamed.push_str(&piece);
    }
    (streamed, ticket.await)
}

/// Polls `done` until it holds; a guard against hangs, not a timing assertion.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(300);
    while !done() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> usize {
    agora_inference::generation::sampling::argmax(v) as usize
}

#[test]
fn a_batched_step_keeps_every_sequence_to_itself() {
    let generator = generator();
    let model = generator.model();
    let r = reference();
    let mut prompts: Vec<Vec<u32>> = r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| ids(&c["input_ids"]))
        .collect();
    prompts.push(vec![1, 9690, 198]); // a short one among the ~40-token chats
    let next = [28u32];

    // Alone: the prompt, then one decode step.
    let alone: Vec<(Vec<f32>, Vec<f32>)> = prompts
        .iter()
        .map(|p| {
            let mut cache = model.new_cache();
            let prefill = model.forward(p, &mut cache).unwrap();
            (prefill, model.forward(&next, &mut cache).unwrap())
        })
        .collect();

    let mut seen: Vec<Option<(Vec<f32>, Vec<f32>)>> = vec![None; prompts.len()];
    for n in 1..=prompts.len() {
        let mut caches: Vec<_> = (0..n).map(|_| model.new_cache()).collect();
        let mut batch: Vec<(&[u32], &mut _)> = prompts
            .iter()
            .map(Vec::as_slice)
            .zip(caches.iter_mut())
            .collect();
        let prefill = model.forward_batch(&mut batch).unwrap();
        let mut batch: Vec<(&[u32], &mut _)> = caches.iter_mut().map(|c| (&next[..], c)).collect();
        let decode = model.forward_batch(&mut batch).unwrap();
        assert_eq!((prefill.len(), decode.len()), (n, n));
        for (i, cache) in caches.iter().enumerate() {
            assert_eq!(cache.len(), prompts[i].len() + 1);
        }
        for i in 0..n {
            let (p, d) = (&prefill[i], &decode[i]);
            if n == 1 {
                // A batch of one is the same computation as alone.
                assert_eq!((p, d), (&alone[i].0, &alone[i].1));
                continue;
            }
            // Alone and batched may differ in the last bits (gemm's matrix-vector kernel for one row;
            // see `Llama::forward_batch`), never in the best token.
            assert!(max_diff(p, &alone[i].0) < 1e-3, "prefill of {i} in {n}");
            assert!(max_diff(d, &alone[i].1) < 1e-3, "decode of {i} in {n}");
            assert_eq!(argmax(p), argmax(&alone[i].0));
            assert_eq!(argmax(d), argmax(&alone[i].1));
            // In batches of two or more, a sequence's logits are the same bits whatever its company.
            match &seen[i] {
                Some((sp, sd)) => {
                    assert!(sp == p && sd == d, "sequence {i} changed in a batch of {n}")
                }
                None => seen[i] = Some((p.clone(), d.clone())),
            }
        }
    }

    // A bad entry fails the call before anything runs: no cache moves.
    let mut good = model.new_cache();
    let mut other = model.new_cache();
    let bad = [u32::MAX];
    let mut batch: Vec<(&[u32], &mut _)> = vec![(&prompts[0], &mut good), (&bad, &mut other)];
    assert!(matches!(
        model.forward_batch(&mut batch),
        Err(GenerationError::TokenOutOfRange { .. })
    ));
    assert!(good.is_empty() && other.is_empty());
    assert!(model.forward_batch(&mut []).unwrap().is_empty());
}

#[tokio::test]
async fn reference_prompts_batched_together_match_transformers_and_alone() {
    let generator = generator();
    let r = reference();
    let new_tokens = r["new_tokens"].as_u64().unwrap() as usize;
    let eos = generator.tokenizer().eos_id().unwrap();
    let cases = r["cases"].as_array().unwrap().clone();
    // Four seats for seven prompts: the first four start together; the others wait and take the
    // seats of those that finish (the first ends at its 8th token with the end-of-turn token), so they
    // join at different steps and prefill beside sequences that are decoding. Budgets differ too.
    let budgets = [new_tokens, new_tokens, 20, new_tokens, 27, new_tokens, 13];
    let scheduler = scheduler(4, 16);

    let submit = |i: usize| {
        let params = GenerationParams {
            max_tokens: budgets[i],
            ..GenerationParams::default()
        };
        tokio::spawn(collect(
            scheduler.submit(ids(&cases[i]["input_ids"]), params),
        ))
    };
    let mut tasks: Vec<_> = (0..4).map(submit).collect();
    // The rest arrive once the first batch is running.
    eventually("the first batch runs", || scheduler.stats().steps() > 2).await;
    tasks.extend((4..cases.len()).map(submit));

    let mut total_tokens = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let (streamed, out) = task.await.unwrap();
        let out = out.unwrap();
        let prompt = cases[i]["prompt"].as_str().unwrap();
        let mut want = ids(&cases[i]["output_ids"]);
        if want.last() == Some(&eos) && want.len() <= budgets[i] {
            want.pop();
            assert_eq!(out.finish, FinishReason::Eos, "{prompt:?}");
        } else {
            want.truncate(budgets[i]);
            assert_eq!(out.finish, FinishReason::MaxTokens, "{prompt:?}");
        }
        assert_eq!(
            out.token_ids, want,
            "{prompt:?}: batched against transformers"
        );
        assert_eq!(
            streamed, out.text,
            "{prompt:?}: the stream adds up to the text"
        );

        let params = GenerationParams {
            max_tokens: budgets[i],
            ..GenerationParams::default()
        };
        let alone = generator
            .generate(&ids(&cases[i]["input_ids"]), &params, |_| {})
            .unwrap();
        assert_eq!(out, alone, "{prompt:?}: batched against alone");
        total_tokens += out.token_ids.len();
    }
    let stats = scheduler.stats();
    assert_eq!(stats.requests().served(), cases.len() as u64);
    assert_eq!(stats.tokens(), total_tokens as u64);
    assert!(
        stats.steps() < total_tokens as u64,
        "{} steps for {total_tokens} tokens: nothing was batched",
        stats.steps()
    );
}

fn seeded(seed: u64) -> GenerationParams {
    GenerationParams {
        max_tokens: 24,
        sampling: SamplingParams {
            temperature: 0.9,
            top_p: 0.9,
            seed,
        },
        ..GenerationParams::default()
    }
}

#[tokio::test]
async fn seeded_sampling_gives_the_same_text_alone_and_batched() {
    let generator = generator();
    let story = "Tell me a story about a dragon.";
    let alone_7 = generator.chat(story, &seeded(7), |_| {}).unwrap();
    let alone_8 = generator.chat(story, &seeded(8), |_| {}).unwrap();
    assert_ne!(alone_7.token_ids, alone_8.token_ids);

    let scheduler = scheduler(8, 16);
    let greedy = GenerationParams {
        max_tokens: 40,
        ..GenerationParams::default()
    };
    // Company first, so the seeded requests join a batch that is already decoding.
    let company = [
        tokio::spawn(collect(scheduler.submit_chat(
            &chat("Give me a short recipe for pancakes."),
            greedy.clone(),
        ))),
        tokio::spawn(collect(
            scheduler.submit_chat(&chat("Write a haiku about the ocean."), seeded(3)),
        )),
    ];
    eventually("the company runs", || scheduler.stats().steps() > 3).await;
    let seven = tokio::spawn(collect(scheduler.submit_chat(&chat(story), seeded(7))));
    let eight = tokio::spawn(collect(scheduler.submit_chat(&chat(story), seeded(8))));

    let (streamed, batched_7) = seven.await.unwrap();
    let batched_7 = batched_7.unwrap();
    assert_eq!(batched_7, alone_7);
    assert_eq!(streamed, batched_7.text);
    assert_eq!(eight.await.unwrap().1.unwrap(), alone_8);
    for task in company {
        task.await.unwrap().1.unwrap();
    }
}

#[tokio::test]
async fn stop_strings_and_streaming_work_in_a_batch() {
    let scheduler = scheduler(4, 16);
    let question = chat("What is the capital of France?");
    let stop = GenerationParams {
        max_tokens: 32,
        stop: vec!["Paris".into(), "never appears".into()],
        ..GenerationParams::default()
    };
    let mid_token = GenerationParams {
        max_tokens: 32,
        stop: vec!["ital of Fr".into()],
        ..GenerationParams::default()
    };
    let tasks = [
        tokio::spawn(collect(scheduler.submit_chat(&question, stop))),
        tokio::spawn(collect(scheduler.submit_chat(&question, mid_token))),
        tokio::spawn(collect(scheduler.submit_chat(
            &chat("List three uses for a paperclip."),
            GenerationParams {
                max_tokens: 3,
                ..GenerationParams::default()
            },
        ))),
        tokio::spawn(collect(scheduler.submit_chat(
            &question,
            GenerationParams {
                max_tokens: 0,
                ..GenerationParams::default()
            },
        ))),
    ];
    let [a, b, c, d] = tasks;
    let (streamed, out) = a.await.unwrap();
    let out = out.unwrap();
    assert_eq!(out.finish, FinishReason::Stop("Paris".into()));
    assert_eq!(out.text, "The capital of France is ");
    assert_eq!(
        streamed, out.text,
        "nothing past the stop string was streamed"
    );

    let (streamed, out) = b.await.unwrap();
    let out = out.unwrap();
    assert_eq!(out.finish, FinishReason::Stop("ital of Fr".into()));
    assert_eq!(
        (out.text.as_str(), streamed.as_str()),
        ("The cap", "The cap")
    );

    let out = c.await.unwrap().1.unwrap();
    assert_eq!(out.token_ids.len(), 3);
    assert_eq!(out.finish, FinishReason::MaxTokens);

    let (streamed, out) = d.await.unwrap();
    let out = out.unwrap();
    assert!(out.token_ids.is_empty() && out.text.is_empty() && streamed.is_empty());
    assert_eq!(out.finish, FinishReason::MaxTokens);
}

/// A generation that runs until it is stopped from outside (400 tokens, end token ignored).
fn endless() -> GenerationParams {
    GenerationParams {
        max_tokens: 400,
        stop_on_eos: false,
        ..GenerationParams::default()
    }
}

#[tokio::test]
async fn a_dropped_ticket_frees_its_seat_at_the_next_step() {
    // One seat: the second request can only run once the first has left it.
    let scheduler = scheduler(1, 4);
    let mut first = scheduler.submit_chat(&chat("Tell me a long story."), endless());
    assert!(first.next_text().await.is_some(), "the first request runs");
    let second = scheduler.submit_chat(
        &chat("What is the capital of France?"),
        GenerationParams {
            max_tokens: 4,
            ..GenerationParams::default()
        },
    );
    drop(first);
    let out = second.await.unwrap();
    assert_eq!(out.token_ids.len(), 4);
    let stats = scheduler.stats();
    assert_eq!(stats.requests().cancelled(), 1);
    assert!(
        stats.tokens() < 400,
        "the dropped request ran on: {} tokens",
        stats.tokens()
    );

    // A request dropped while it waits never runs.
    let mut running = scheduler.submit_chat(&chat("Tell me a long story."), endless());
    assert!(running.next_text().await.is_some());
    let waiting = scheduler.submit_chat(&chat("Hello!"), endless());
    assert_eq!(stats.requests().queued(), 1);
    drop(waiting);
    drop(running);
    eventually("both are dropped", || stats.requests().cancelled() == 3).await;
    assert_eq!(stats.requests().served(), 1);
}

#[tokio::test]
async fn a_full_queue_answers_busy_at_once() {
    let scheduler = scheduler(1, 1);
    let mut running = scheduler.submit_chat(&chat("Tell me a long story."), endless());
    assert!(running.next_text().await.is_some());
    let waiting = scheduler.submit_chat(&chat("Hello!"), endless());
    let refused = scheduler.submit_chat(&chat("Hello again!"), endless());
    assert!(matches!(
        refused.await,
        Err(RequestError::Scheduler(SchedulerError::Busy))
    ));
    assert_eq!(scheduler.stats().requests().rejected(), 1);
    drop((running, waiting));
}

#[tokio::test]
async fn deadlines_are_kept_while_waiting_and_while_running() {
    let scheduler = scheduler(2, 4);
    // Running past its deadline: the ticket gives up at the deadline, and the seat is freed.
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut late =
        scheduler.submit_chat_with_deadline(&chat("Tell me a long story."), endless(), deadline);
    let mut pieces = 0;
    while late.next_text().await.is_some() {
        pieces += 1;
    }
    assert!(pieces < 400);
    assert!(matches!(
        late.await,
        Err(RequestError::Scheduler(SchedulerError::DeadlineExceeded))
    ));
    assert!(Instant::now() >= deadline);
    eventually("the seat is freed", || scheduler.stats().active() == 0).await;

    // Already past: answered without running.
    let past = scheduler.submit_chat_with_deadline(
        &chat("Hello!"),
        GenerationParams::default(),
        Instant::now(),
    );
    assert!(matches!(
        past.await,
        Err(RequestError::Scheduler(SchedulerError::DeadlineExceeded))
    ));

    // Outside async code the worker enforces the deadline itself.
    let blocking = scheduler.clone();
    let answer = tokio::task::spawn_blocking(move || {
        blocking
            .submit_chat_with_deadline(
                &chat("Tell me a long story."),
                endless(),
                Instant::now() + Duration::from_millis(500),
            )
            .wait()
    })
    .await
    .unwrap();
    assert!(matches!(
        answer,
        Err(RequestError::Scheduler(SchedulerError::DeadlineExceeded))
    ));
    assert!(scheduler.stats().requests().expired() >= 1);
}

#[tokio::test]
async fn invalid_requests_are_refused_before_they_queue() {
    let scheduler = scheduler(2, 4);
    let refused = |ticket: GenerationTicket| async move {
        match ticket.await {
            Err(RequestError::Generation(e)) => e,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    let params = GenerationParams::default();
    assert!(matches!(
        refused(scheduler.submit(Vec::new(), params.clone())).await,
        GenerationError::EmptyPrompt
    ));
    assert!(matches!(
        refused(scheduler.submit(vec![u32::MAX], params.clone())).await,
        GenerationError::TokenOutOfRange { .. }
    ));
    let huge = GenerationParams {
        max_tokens: 1 << 20,
        ..GenerationParams::default()
    };
    assert!(matches!(
        refused(scheduler.submit_chat(&chat("hi"), huge)).await,
        GenerationError::ContextFull { .. }
    ));
    let bad_sampling = GenerationParams {
        sampling: SamplingParams {
            temperature: -1.0,
            top_p: 1.0,
            seed: 0,
        },
        ..GenerationParams::default()
    };
    assert!(matches!(
        refused(scheduler.submit_chat(&chat("hi"), bad_sampling)).await,
        GenerationError::InvalidSampling(_)
    ));
    assert_eq!(scheduler.stats().requests().queued(), 0);
    assert_eq!(scheduler.stats().steps(), 0);
}

#[tokio::test]
async fn dropping_the_scheduler_finishes_what_it_holds() {
    let scheduler = scheduler(1, 4);
    let params = GenerationParams {
        max_tokens: 5,
        ..GenerationParams::default()
    };
    let a = scheduler.submit_chat(&chat("What is 17 + 25?"), params.clone());
    let b = scheduler.submit_chat(&chat("Name a colour."), params);
    drop(scheduler);
    assert_eq!(a.await.unwrap().token_ids.len(), 5);
    assert_eq!(b.await.unwrap().token_ids.len(), 5);
}
