#!/usr/bin/env python3
"""Generated tokens per second at batch 1: Agora's burn model (CPU, release) against Hugging Face
transformers (float32, same GGUF, same thread count), measured in the same run, alternating.

Both sides generate exactly N new tokens greedily, past the end of the answer, from the same
chat-formatted prompts; time is the generation only (prompt prefill included, model loading excluded).
The Rust side is the `#[ignore]`d benchmark in `inference/tests/generation_bench.rs`:

    cargo test --release -p agora-inference --test generation_bench --no-run   # prints the binary path
    /work/venv-gen/bin/python inference/benches/generation_compare.py \
        --rust-bench target/release/deps/generation_bench-XXXX --threads 2 --tokens 128
"""

import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import time

PROMPTS = [
    "Write a haiku about the ocean.",
    "Explain why the sky is blue in two sentences.",
    "Give me a short recipe for pancakes.",
]


def model_dir() -> pathlib.Path:
    root = os.environ.get("AGORA_MODELS")
    if root:
        return pathlib.Path(root) / "smollm2-135m-instruct"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(cache) / "agora" / "models" / "smollm2-135m-instruct"


def run_rust(binary: str, tokens: int, threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), GEN_BENCH_TOKENS=str(tokens))
    out = subprocess.run(
        [binary, "--ignored", "--nocapture", "--test-threads", "1", "generated_tokens_per_second"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    runs = [json.loads(l[l.index("{"):]) for l in out.stdout.splitlines() if "{\"" in l]
    return {r["prompt"]: r["tokens_per_second"] for r in runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rust-bench", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(model_dir(), gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(model_dir(), gguf_file=gguf, dtype=torch.float32).eval()

    def run_hf(prompt: str) -> float:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            start = time.perf_counter()
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                do_sample=False,
                pad_token_id=tok.eos_token_id,
            )
            seconds = time.perf_counter() - start
        n = out.shape[1] - ids.shape[1]
        assert n == args.tokens, n
        return n / seconds

    run_hf(PROMPTS[0])  # warm-up (first call allocates and picks kernels)
    agora, hf = [], []
    for _ in range(args.rounds):
        rust = run_rust(args.rust_bench, args.tokens, args.threads)
        for p in PROMPTS:
            agora.append(rust[p])
            hf.append(run_hf(p))
    result = {
        "threads": args.threads,
        "new_tokens": args.tokens,
        "runs_each": len(agora),
        "agora_tok_s_median": round(statistics.median(agora), 2),
        "transformers_tok_s_median": round(statistics.median(hf), 2),
        "speedup": round(statistics.median(agora) / statistics.median(hf), 2),
        "agora_all": [round(x, 2) for x in agora],
        "transformers_all": [round(x, 2) for x in hf],
        "versions": f"transformers {transformers.__version__}, torch {torch.__version__}",
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
