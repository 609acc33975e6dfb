#!/usr/bin/env python3
"""PyTorch baseline for benches/embed_throughput.rs: sentence-transformers on the same texts and threads.

The Rust bench starts this script (with the Python named by AGORA_BENCH_PYTHON) as

    embedding_baseline.py TEXTS_JSON THREADS

and then drives it over stdin, so that burn and PyTorch rounds alternate and share the machine's
conditions: each stdin line is a batch size; the script embeds all texts once at that batch size and
answers with one line, the seconds it took. It prints "ready <torch version> <threads>" after loading.
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


def main() -> None:
    texts = json.loads(pathlib.Path(sys.argv[1]).read_text())
    torch.set_num_threads(int(sys.argv[2]))
    torch.set_num_interop_threads(1)
    model = SentenceTransformer(str(cache_root() / "all-minilm-l6-v2"), device="cpu")
    model.eval()

    def one_pass(batch: int) -> None:
        with torch.inference_mode():
            for i in range(0, len(texts), batch):
                model.encode(
                    texts[i : i + batch],
                    batch_size=batch,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )

    for batch in (1, 32):
        one_pass(batch)  # warm-up
    print(f"ready {torch.__version__} {torch.get_num_threads()}", flush=True)
    for line in sys.stdin:
        batch = int(line)
        start = time.perf_counter()
        one_pass(batch)
        print(time.perf_counter() - start, flush=True)


if __name__ == "__main__":
    main()
