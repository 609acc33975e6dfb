//! The OpenAI-compatible gateway, in process: the official `openai` Python client against the real
//! models (node/tests/python/openai_client.py), and plain HTTP for the refusals a client library
//! would hide (bad JSON, oversized bodies, unknown routes, each backend error's status code, limits).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

mod common;

use common::venv_python;

use agora::gateway::{
    Answered, GatewayBackend, GatewayConfig, GatewayError, ModelInfo, PRICE_HEADER,
    PROVIDER_HEADER, RECEIPT_HEADER,
};
use agora::market::runner::ModelRunner;
use agora_inference::backend::DevicePreference;
use agora_inference::model_cache::{MINILM, SMOLLM2};
use agora_protocols::{
    EmbedInput, EmbedOutput, Finish, GenerateInput, GenerateOutput, Payload, Task,
};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// --- a gateway on 127.0.0.1:0 ------------------------------------------------------------------------

/// A gateway served by its own runtime; dropped with the test.
struct Server {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn start<B: GatewayBackend>(backend: B, config: GatewayConfig) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(agora::gateway::serve(listener, Arc::new(backend), config));
    Server {
        addr,
        _runtime: runtime,
    }
}

// --- the real models, in process --------------------------------------------------------------------

/// A backend that answers with the real models in this process, through the same `ModelRunner` a
/// provider runs: what a one-provider mesh answers, without the mesh.
struct LocalModels {
    runner: ModelRunner,
    receipts: AtomicU64,
}

impl LocalModels {
    fn load() -> Self {
        let models = [MINILM.to_string(), SMOLLM2.to_string()];
        let runner = ModelRunner::load(&models, DevicePreference::from_env(), |_| {})
            .expect("the models are missing: run scripts/fetch-models");
        Self {
            runner,
            receipts: AtomicU64::new(0),
        }
    }

    fn answered<T>(&self, output: T, price: u64) -> Answered<T> {
        Answered {
            output,
            provider: "12D3KooWLocalModelsInThisTest".to_owned(),
            receipt_id: format!("{:064x}", self.receipts.fetch_add(1, Ordering::Relaxed)),
            price,
        }
    }

    fn check_model(model: &str, task: Task) -> Result<(), GatewayError> {
        match (model, task) {
            (MINILM, Task::Embed) | (SMOLLM2, Task::Generate) => Ok(()),
            (MINILM | SMOLLM2, _) => Err(GatewayError::BadRequest(format!(
                "model `{model}` does not serve the {task} task"
            ))),
            _ => Err(GatewayError::ModelNotFound(format!(
                "The model `{model}` does not exist"
            ))),
        }
    }

    async fn run<I: Payload, O: Payload>(
        &self,
        task: Task,
        model: &str,
        input: &I,
    ) -> Result<O, GatewayError> {
        let bytes = input
            .to_bytes()
            .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let output = self
            .runner
            .run(task, model, &bytes, deadline)
            .await
            .map_err(|e| GatewayError::Upstream(e.to_string()))?;
        O::from_bytes(&output).map_err(|e| GatewayError::Upstream(e.to_string()))
    }
}

impl GatewayBackend for LocalModels {
    async fn models(&self) -> Result<Vec<ModelInfo>, GatewayError> {
        Ok(vec![
            ModelInfo {
                id: MINILM.to_owned(),
                task: Task::Embed,
                providers: 1,
                min_price: 2_000_000,
            },
            ModelInfo {
                id: SMOLLM2.to_owned(),
                task: Task::Generate,
                providers: 1,
                min_price: 5_000_000,
            },
        ])
    }

    async fn embed(
        &self,
        model: String,
        input: EmbedInput,
    ) -> Result<Answered<EmbedOutput>, GatewayError> {
        Self::check_model(&model, Task::Embed)?;
        let output = self.run(Task::Embed, &model, &input).await?;
        Ok(self.answered(output, 2_000_000))
    }

    async fn chat(
        &self,
        model: String,
        input: GenerateInput,
    ) -> Result<Answered<GenerateOutput>, GatewayError> {
        Self::check_model(&model, Task::Generate)?;
        let output = self.run(Task::Generate, &model, &input).await?;
        Ok(self.answered(output, 5_000_000))
    }
}

#[test]
fn official_openai_python_client_against_the_real_models() {
    let python = venv_python();
    let server = start(LocalModels::load(), GatewayConfig::default());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(["--base-url", &format!("http://{}/v1", server.addr)])
        .args(["--embed-model", MINILM, "--chat-model", SMOLLM2])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the openai client failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("openai-client: 9 checks passed"),
        "unexpected summary:\n{stdout}"
    );
}

// --- plain HTTP against a fake backend --------------------------------------------------------------

/// A backend without models: `fake-embed` and `fake-chat` answer at once, `slow` sleeps 5 s,
/// `fail-<kind>` fails with that [`GatewayError`].
struct Fake;

fn fake_error(model: &str) -> Option<GatewayError> {
    let m = format!("failure of {model}");
    Some(match model {
        "fail-bad-request" => GatewayError::BadRequest(m),
        "fail-model-not-found" => GatewayError::ModelNotFound(m),
        "fail-no-provider" => GatewayError::NoProvider(m),
        "fail-rate-limited" => GatewayError::RateLimited(m),
        "fail-insufficient-credit" => GatewayError::InsufficientCredit(m),
        "fail-timeout" => GatewayError::Timeout(m),
        "fail-upstream" => GatewayError::Upstream(m),
        "fail-internal" => GatewayError::Internal(m),
        _ => return None,
    })
}

async fn fake_gate(model: &str) -> Result<(), GatewayError> {
    if model == "slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    match fake_error(model) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn fake_answered<T>(output: T) -> Answered<T> {
    Answered {
        output,
        provider: "12D3KooWFake".to_owned(),
        receipt_id: "ab".repeat(32),
        price: 1234,
    }
}

impl GatewayBackend for Fake {
    async fn models(&self) -> Result<Vec<ModelInfo>, GatewayError> {
        Ok(vec![ModelInfo {
            id: "org/fake-embed".to_owned(),
            task: Task::Embed,
            providers: 3,
            min_price: 7,
        }])
    }

    async fn embed(
        &self,
        model: String,
        input: EmbedInput,
    ) -> Result<Answered<EmbedOutput>, GatewayError> {
        fake_gate(&model).await?;
        Ok(fake_answered(EmbedOutput {
            dimension: 2,
            vectors: input.texts.iter().map(|_| vec![1.0, -0.5]).collect(),
            tokens: 3,
        }))
    }

    async fn chat(
        &self,
        model: String,
        input: GenerateInput,
    ) -> Result<Answered<GenerateOutput>, GatewayError> {
        fake_gate(&model).await?;
        let last = input.messages.last().map(|m| m.content.clone());
        Ok(fake_answered(GenerateOutput {
            text: format!("you said: {}", last.unwrap_or_default()),
            token_ids: vec![1, 2, 3],
            prompt_tokens: 5,
            finish: Finish::Length,
        }))
    }
}

/// One HTTP/1.1 exchange on a fresh connection.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// Asserts an OpenAI-shaped error with this status and type.
    fn assert_error(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let json = self.json();
        let error = &json["error"];
        assert_eq!(error["type"], kind, "{json}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
        assert!(
            error.get("param").is_some() && error.get("code").is_some(),
            "{json}"
        );
        error.clone()
    }
}

fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    exchange(addr, &raw)
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    request(addr, "POST", path, body.to_string().as_bytes())
}

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

#[test]
fn bad_json_is_400_in_openai_shape() {
    let server = start(Fake, GatewayConfig::default());
    for body in [
        &b"{\"model\": "[..],
        b"not json at all",
        b"",
        br#"{"model": 5, "messages": []}"#,
        br#"{"messages": [{"role": "user", "content": "hi"}]}"#,
    ] {
        let reply = request(server.addr, "POST", "/v1/chat/completions", body);
        reply.assert_error(400, "invalid_request_error");
    }
    let reply = post(server.addr, "/v1/embeddings", &json!({"input": "x"}));
    let error = reply.assert_error(400, "invalid_request_error");
    assert!(
        error["message"].as_str().unwrap().contains("model"),
        "{error}"
    );
}

#[test]
fn oversized_body_is_413() {
    let config = GatewayConfig {
        max_body_bytes: 1024,
        ..GatewayConfig::default()
    };
    let server = start(Fake, config);
    let big = json!({"model": "fake-embed", "input": "x".repeat(2000)});
    let reply = post(server.addr, "/v1/embeddings", &big);
    let error = reply.assert_error(413, "invalid_request_error");
    assert!(
        error["message"].as_str().unwrap().contains("1024"),
        "{error}"
    );

    // Without Content-Length (chunked), the limit is found while reading.
    let body = big.to_string();
    let raw = format!(
        "POST /v1/embeddings HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    exchange(server.addr, raw.as_bytes()).assert_error(413, "invalid_request_error");

    // Under the limit, the same route answers.
    let small = json!({"model": "fake-embed", "input": "x"});
    assert_eq!(post(server.addr, "/v1/embeddings", &small).status, 200);
}

#[test]
fn unknown_route_is_404_and_wrong_method_405() {
    let server = start(Fake, GatewayConfig::default());
    let reply = request(server.addr, "GET", "/v1/nothing-here", b"");
    let error = reply.assert_error(404, "invalid_request_error");
    assert_eq!(error["message"], "Invalid URL (GET /v1/nothing-here)");
    let reply = request(server.addr, "POST", "/", b"{}");
    reply.assert_error(404, "invalid_request_error");
    let reply = request(server.addr, "GET", "/v1/chat/completions", b"");
    reply.assert_error(405, "invalid_request_error");
}

#[test]
fn models_list_and_retrieve() {
    let server = start(Fake, GatewayConfig::default());
    let list = request(server.addr, "GET", "/v1/models", b"");
    assert_eq!(list.status, 200);
    let json = list.json();
    assert_eq!(json["object"], "list");
    assert_eq!(json["data"][0]["id"], "org/fake-embed");
    assert_eq!(json["data"][0]["object"], "model");
    assert_eq!(json["data"][0]["owned_by"], "agora-mesh");
    assert!(json["data"][0]["created"].is_u64());
    assert_eq!(json["data"][0]["agora"]["task"], "embed");
    assert_eq!(json["data"][0]["agora"]["providers"], 3);
    let one = request(server.addr, "GET", "/v1/models/org/fake-embed", b"");
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.json()["id"], "org/fake-embed");
    let missing = request(server.addr, "GET", "/v1/models/nope", b"");
    let error = missing.assert_error(404, "invalid_request_error");
    assert_eq!(error["code"], "model_not_found");
}

#[test]
fn backend_errors_map_to_openai_status_codes() {
    let server = start(Fake, GatewayConfig::default());
    for (model, status, kind, code, retry_after) in [
        (
            "fail-bad-request",
            400,
            "invalid_request_error",
            Value::Null,
            false,
        ),
        (
            "fail-model-not-found",
            404,
            "invalid_request_error",
            json!("model_not_found"),
            false,
        ),
        (
            "fail-no-provider",
            503,
            "server_error",
            json!("no_provider"),
            true,
        ),
        (
            "fail-rate-limited",
            429,
            "rate_limit_error",
            json!("rate_limit_exceeded"),
            true,
        ),
        (
            "fail-insufficient-credit",
            402,
            "insufficient_quota",
            json!("insufficient_quota"),
            false,
        ),
        (
            "fail-timeout",
            504,
            "timeout_error",
            json!("timeout"),
            false,
        ),
        (
            "fail-upstream",
            502,
            "server_error",
            json!("upstream_error"),
            false,
        ),
        (
            "fail-internal",
            500,
            "server_error",
            json!("internal_error"),
            false,
        ),
    ] {
        for reply in [
            post(server.addr, "/v1/chat/completions", &chat_body(model)),
            post(
                server.addr,
                "/v1/embeddings",
                &json!({"model": model, "input": "x"}),
            ),
        ] {
            let error = reply.assert_error(status, kind);
            assert_eq!(error["code"], code, "{model}: {error}");
            assert_eq!(error["message"], format!("failure of {model}"));
            assert_eq!(
                reply.header("retry-after").is_some(),
                retry_after,
                "{model}"
            );
        }
    }
}

#[test]
fn invalid_requests_are_400_naming_the_field() {
    let server = start(Fake, GatewayConfig::default());
    let messages = json!([{"role": "user", "content": "hi"}]);
    for (body, param) in [
        (
            json!({"model": "fake-chat", "messages": messages, "n": 2}),
            "n",
        ),
        (
            json!({"model": "fake-chat", "messages": messages, "temperature": 2.5}),
            "temperature",
        ),
        (
            json!({"model": "fake-chat", "messages": messages, "top_p": -1}),
            "top_p",
        ),
        (
            json!({"model": "fake-chat", "messages": messages, "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"model": "fake-chat", "messages": messages, "max_completion_tokens": 100_000}),
            "max_completion_tokens",
        ),
        (
            json!({"model": "fake-chat", "messages": messages, "stop": 3}),
            "stop",
        ),
        (json!({"model": "fake-chat", "messages": []}), "messages"),
        (
            json!({"model": "fake-chat", "messages": messages, "tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools",
        ),
        (
            json!({"model": "fake-chat", "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "fake-chat", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            "messages[0].content[0]",
        ),
    ] {
        let reply = post(server.addr, "/v1/chat/completions", &body);
        let error = reply.assert_error(400, "invalid_request_error");
        assert_eq!(error["param"], param, "{body}: {error}");
    }
    for (body, param) in [
        (json!({"model": "fake-embed", "input": [1, 2, 3]}), "input"),
        (
            json!({"model": "fake-embed", "input": [[1, 2], [3]]}),
            "input",
        ),
        (json!({"model": "fake-embed", "input": []}), "input"),
        (json!({"model": "fake-embed", "input": ""}), "input"),
        (json!({"model": "fake-embed", "input": ["a", 1]}), "input"),
        (
            json!({"model": "fake-embed", "input": "a", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (
            json!({"model": "fake-embed", "input": "a", "dimensions": 3}),
            "dimensions",
        ),
    ] {
        let reply = post(server.addr, "/v1/embeddings", &body);
        let error = reply.assert_error(400, "invalid_request_error");
        assert_eq!(error["param"], param, "{body}: {error}");
    }
    let token_arrays = post(
        server.addr,
        "/v1/embeddings",
        &json!({"model": "fake-embed", "input": [1, 2]}),
    );
    let message = token_arrays.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("token-array inputs are not supported"),
        "{message}"
    );
}

#[test]
fn answers_carry_receipt_headers_and_both_encodings() {
    let server = start(Fake, GatewayConfig::default());
    let reply = post(
        server.addr,
        "/v1/embeddings",
        &json!({"model": "fake-embed", "input": ["a", "b"], "dimensions": 2}),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header(PROVIDER_HEADER).unwrap(), "12D3KooWFake");
    assert_eq!(reply.header(RECEIPT_HEADER).unwrap(), "ab".repeat(32));
    assert_eq!(reply.header(PRICE_HEADER).unwrap(), "1234");
    let json = reply.json();
    assert_eq!(json["object"], "list");
    assert_eq!(json["model"], "fake-embed");
    assert_eq!(json["data"][1]["index"], 1);
    assert_eq!(json["data"][1]["object"], "embedding");
    assert_eq!(json["data"][1]["embedding"], json!([1.0, -0.5]));
    assert_eq!(
        json["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );

    let reply = post(
        server.addr,
        "/v1/embeddings",
        &json!({"model": "fake-embed", "input": "a", "encoding_format": "base64"}),
    );
    // 1.0 and -0.5 as little-endian f32: 00 00 80 3f, 00 00 00 bf.
    assert_eq!(reply.json()["data"][0]["embedding"], "AACAPwAAAL8=");

    let reply = post(server.addr, "/v1/chat/completions", &chat_body("fake-chat"));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header(RECEIPT_HEADER).unwrap(), "ab".repeat(32));
    let json = reply.json();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["id"], format!("chatcmpl-{}", "ab".repeat(32)));
    assert_eq!(json["choices"][0]["message"]["role"], "assistant");
    assert_eq!(json["choices"][0]["message"]["content"], "you said: hello");
    assert_eq!(json["choices"][0]["finish_reason"], "length");
    assert_eq!(
        json["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    );
}

#[test]
fn big_embedding_requests_are_split_into_several_queries() {
    let server = start(Fake, GatewayConfig::default());
    let texts: Vec<String> = (0..600).map(|i| format!("text {i}")).collect();
    let reply = post(
        server.addr,
        "/v1/embeddings",
        &json!({"model": "fake-embed", "input": texts}),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    // 600 texts at 256 a query: 3 queries, 3 receipts, 3 prices.
    assert_eq!(reply.header(RECEIPT_HEADER).unwrap().split(',').count(), 3);
    assert_eq!(reply.header(PROVIDER_HEADER).unwrap().split(',').count(), 3);
    assert_eq!(reply.header(PRICE_HEADER).unwrap(), "3702");
    let json = reply.json();
    assert_eq!(json["data"].as_array().unwrap().len(), 600);
    assert_eq!(json["data"][599]["index"], 599);
    assert_eq!(json["usage"]["prompt_tokens"], 9);
}

#[test]
fn stream_is_server_sent_chunks_ending_with_done() {
    let server = start(Fake, GatewayConfig::default());
    let mut body = chat_body("fake-chat");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let reply = post(server.addr, "/v1/chat/completions", &body);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events: Vec<&str> = reply.body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "you said: hello");
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("length")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["total_tokens"], 8);
    // Word-sized pieces: role chunk, 3 words, finish chunk, usage chunk.
    assert_eq!(chunks.len(), 6, "{chunks:?}");
}

#[test]
fn requests_past_the_limit_get_503_with_retry_after() {
    let config = GatewayConfig {
        max_concurrent_requests: 1,
        ..GatewayConfig::default()
    };
    let server = start(Fake, config);
    let addr = server.addr;
    let slow = std::thread::spawn(move || post(addr, "/v1/chat/completions", &chat_body("slow")));
    std::thread::sleep(Duration::from_millis(500));
    let reply = post(addr, "/v1/chat/completions", &chat_body("fake-chat"));
    let error = reply.assert_error(503, "server_error");
    assert_eq!(error["code"], "overloaded");
    assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    assert_eq!(slow.join().unwrap().status, 200);
    // The permit is back.
    assert_eq!(
        post(addr, "/v1/chat/completions", &chat_body("fake-chat")).status,
        200
    );
}

#[test]
fn answers_past_the_deadline_get_504() {
    let config = GatewayConfig {
        request_deadline: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let server = start(Fake, config);
    let reply = post(
        server.addr,
        "/v1/embeddings",
        &json!({"model": "slow", "input": "x"}),
    );
    let error = reply.assert_error(504, "timeout_error");
    assert_eq!(error["code"], "timeout");
}
