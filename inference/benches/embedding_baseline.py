#!/usr/bin/env python3
"""PyTorch baseline for benches/embedding.rs: sentence-transformers on the same texts and threads.

Called by the Rust bench (set AGORA_BENCH_PYTHON to a Python with sentence-transformers):

    embedding_baseline.py TEXTS_JSON THREADS SECONDS

TEXTS_JSON is a JSON list of strings. Prints one JSON object: embeddings per second at batch 1 and 32.
The model is loaded offline from the Agora model cache, on CPU.
"""

import json
import os
import pathlib
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


def cache_root() -> pathlib.Path:
    if os.environ.get("AGORA_MODELS"):
        return pathlib.Path(os.environ["AGORA_MODELS"])
    if os.environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(os.environ["XDG_CACHE_HOME"]) / "agora" / "models"
    return pathlib.Path.home() / ".cache" / "agora" / "models"


def rate(fn, n_items: int, seconds: float) -> float:
    fn()  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        fn()
        done += n_items
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    texts = json.loads(pathlib.Path(sys.argv[1]).read_text())
    threads = int(sys.argv[2])
    seconds = float(sys.argv[3])
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    model = SentenceTransformer(str(cache_root() / "all-minilm-l6-v2"), device="cpu")
    model.eval()

    def batch1():
        with torch.inference_mode():
            for t in texts:
                model.encode([t], batch_size=1, normalize_embeddings=True)

    def batch32():
        with torch.inference_mode():
            for i in range(0, len(texts), 32):
                model.encode(texts[i : i + 32], batch_size=32, normalize_embeddings=True)

    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch1_per_s": rate(batch1, len(texts), seconds),
        "batch32_per_s": rate(batch32, len(texts), seconds),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
