"""Drives an Agora gateway with the official `openai` Python client, as a user would.

    python openai_client.py --base-url http://127.0.0.1:PORT/v1 \
        [--embed-model all-minilm-l6-v2] [--chat-model smollm2-135m-instruct]

Checks models, embeddings (base64 and float encodings, single and list input, unit norm, that related
sentences are closer than unrelated ones), chat completions (plain, streamed, seeded) and the errors
the client must map to its exception classes. Prints one line per check, then a summary line
`openai-client: N checks passed` and exits 0; on the first failure it prints `openai-client: FAILED ...`
and exits 1. Used by node/tests/gateway.rs (models in process) and by the mesh end-to-end test.
"""

import argparse
import math
import sys
import traceback

import openai

CHECKS = []


def check(name):
    def wrap(fn):
        CHECKS.append((name, fn))
        return fn

    return wrap


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


def expect_error(exception, fn):
    try:
        fn()
    except exception as e:
        return e
    except openai.APIStatusError as e:
        raise AssertionError(
            f"expected {exception.__name__}, got {type(e).__name__} ({e.status_code}): {e}"
        )
    raise AssertionError(f"expected {exception.__name__}, the call succeeded")


@check("models.list names both models")
def models_list(client, args):
    ids = [m.id for m in client.models.list()]
    expect(args.embed_model in ids and args.chat_model in ids, f"models listed: {ids}")


@check("models.retrieve finds a model, 404 for an unknown one")
def models_retrieve(client, args):
    model = client.models.retrieve(args.embed_model)
    expect(model.id == args.embed_model and model.object == "model", f"retrieved {model}")
    expect_error(openai.NotFoundError, lambda: client.models.retrieve("no-such-model"))


@check("embeddings.create: one string, default (base64) encoding, 384 floats of unit norm")
def embed_single(client, args):
    raw = client.embeddings.with_raw_response.create(model=args.embed_model, input="The cat sat on the mat.")
    expect(raw.headers.get("x-agora-provider"), f"no x-agora-provider header: {dict(raw.headers)}")
    expect(raw.headers.get("x-agora-receipt"), "no x-agora-receipt header")
    expect(raw.headers.get("x-agora-price") is not None, "no x-agora-price header")
    response = raw.parse()
    expect(len(response.data) == 1, f"{len(response.data)} embeddings")
    vector = response.data[0].embedding
    expect(len(vector) == 384, f"dimension {len(vector)}")
    expect(abs(norm(vector) - 1.0) < 1e-3, f"norm {norm(vector)}")
    expect(response.usage.prompt_tokens > 0, f"usage {response.usage}")
    expect(response.model == args.embed_model, f"model {response.model}")


@check("embeddings.create: a list, float encoding equals base64, related closer than unrelated")
def embed_list(client, args):
    texts = [
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar on stage.",
        "The stock market fell sharply on Tuesday.",
    ]
    as_float = client.embeddings.create(model=args.embed_model, input=texts, encoding_format="float")
    as_base64 = client.embeddings.create(model=args.embed_model, input=texts)
    expect([d.index for d in as_float.data] == [0, 1, 2], f"indices {[d.index for d in as_float.data]}")
    a, b, c = (d.embedding for d in as_float.data)
    for x, y in zip(as_float.data, as_base64.data):
        expect(
            max(abs(p - q) for p, q in zip(x.embedding, y.embedding)) < 1e-6,
            "float and base64 encodings differ",
        )
    related, unrelated = cosine(a, b), cosine(a, c)
    expect(related > unrelated + 0.2, f"cosine related {related:.3f}, unrelated {unrelated:.3f}")
    print(f"  cosine related {related:.3f}, unrelated {unrelated:.3f}")


@check("embeddings.create: refusals (unknown model 404, token arrays 400, wrong dimensions 400)")
def embed_errors(client, args):
    expect_error(openai.NotFoundError, lambda: client.embeddings.create(model="no-such-model", input="x"))
    expect_error(
        openai.BadRequestError, lambda: client.embeddings.create(model=args.embed_model, input=[[1, 2, 3]])
    )
    e = expect_error(
        openai.BadRequestError,
        lambda: client.embeddings.create(model=args.embed_model, input="x", dimensions=128),
    )
    expect("384" in str(e), f"the dimensions error does not name the model's width: {e}")


def chat_messages():
    return [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]


@check("chat.completions.create: a greedy answer with usage and a finish reason")
def chat_plain(client, args):
    raw = client.chat.completions.with_raw_response.create(
        model=args.chat_model, messages=chat_messages(), max_tokens=24, temperature=0
    )
    expect(raw.headers.get("x-agora-receipt"), "no x-agora-receipt header")
    response = raw.parse()
    choice = response.choices[0]
    text = choice.message.content
    expect(response.object == "chat.completion", f"object {response.object}")
    expect(choice.message.role == "assistant", f"role {choice.message.role}")
    expect(text and text.strip(), f"empty answer: {text!r}")
    expect(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason}")
    expect(response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0, f"usage {response.usage}")
    expect(
        response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens,
        f"usage {response.usage}",
    )
    print(f"  answer: {text!r} ({choice.finish_reason})")
    args.greedy_text = text


@check("chat.completions.create(stream=True): role, pieces, finish reason; same text as unstreamed")
def chat_stream(client, args):
    stream = client.chat.completions.create(
        model=args.chat_model,
        messages=chat_messages(),
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    roles, pieces, finishes, usage, chunks = [], [], [], None, 0
    for chunk in stream:
        chunks += 1
        expect(chunk.object == "chat.completion.chunk", f"object {chunk.object}")
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    text = "".join(pieces)
    expect(roles == ["assistant"], f"roles {roles}")
    expect(text.strip(), "empty streamed answer")
    expect(len(finishes) == 1 and finishes[0] in ("stop", "length"), f"finish reasons {finishes}")
    expect(usage is not None and usage.completion_tokens > 0, f"usage {usage}")
    greedy = getattr(args, "greedy_text", None)
    expect(greedy is None or text == greedy, f"streamed {text!r} differs from {greedy!r}")
    print(f"  {chunks} chunks, {len(pieces)} pieces")


@check("chat.completions.create: seeded sampling is reproducible, content parts accepted")
def chat_seeded(client, args):
    messages = [{"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}]
    answers = [
        client.chat.completions.create(
            model=args.chat_model, messages=messages, max_tokens=12, temperature=0.9, seed=7, stop=["\n\n"]
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    expect(answers[0] == answers[1], f"same seed, different answers: {answers}")
    expect(answers[0].strip(), "empty answer")


@check("chat.completions.create: refusals (unknown model 404, n=2 400, bad temperature 400)")
def chat_errors(client, args):
    expect_error(
        openai.NotFoundError,
        lambda: client.chat.completions.create(model="no-such-model", messages=chat_messages()),
    )
    e = expect_error(
        openai.BadRequestError,
        lambda: client.chat.completions.create(model=args.chat_model, messages=chat_messages(), n=2),
    )
    expect(e.body and e.body.get("param") == "n", f"error body {e.body}")
    expect_error(
        openai.BadRequestError,
        lambda: client.chat.completions.create(model=args.chat_model, messages=chat_messages(), temperature=5),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--embed-model", default="all-minilm-l6-v2")
    parser.add_argument("--chat-model", default="smollm2-135m-instruct")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    # No retries: a check must see the gateway's first answer.
    client = openai.OpenAI(base_url=args.base_url, api_key="agora", max_retries=0, timeout=args.timeout)
    for name, fn in CHECKS:
        try:
            fn(client, args)
        except Exception as e:  # noqa: BLE001 - any failure fails the check
            traceback.print_exc()
            print(f"openai-client: FAILED {name}: {type(e).__name__}: {e}")
            sys.stdout.flush()
            sys.exit(1)
        print(f"ok  {name}")
    print(f"openai-client: {len(CHECKS)} checks passed (openai {openai.__version__})")


if __name__ == "__main__":
    main()
