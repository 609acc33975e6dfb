#!/usr/bin/env python3
"""Greedy reference for `inference/tests/generation.rs`.

Loads the same GGUF file the Rust code reads with Hugging Face transformers (dequantised to float32),
applies the chat template stored in the GGUF, and greedy-decodes 32 new tokens for each prompt. Writes
prompt, chat-formatted text, input ids, output ids (new tokens only), decoded text and the margin between
the two best logits at each step (a small margin flags a step where float rounding could flip the
argmax) to `generation_reference.json` next to this script.

Run once, outside the test command (torch is a multi-GB install):

    python3 -m venv /work/venv-gen
    /work/venv-gen/bin/pip install transformers gguf accelerate sentencepiece
    /work/venv-gen/bin/python inference/tests/data/generation_make_reference.py

The model file is found like the Rust code finds it: $AGORA_MODELS, else $XDG_CACHE_HOME/agora/models,
else ~/.cache/agora/models; `scripts/fetch-models` puts it there.
"""

import json
import os
import pathlib
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

NEW_TOKENS = 32
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the ocean.",
    "Explain why the sky is blue in two sentences.",
    "List three uses for a paperclip.",
    "What is 17 + 25? Show your work.",
    "Translate 'good morning, my friend' into Spanish and German.",
    "Give me a short recipe for pancakes.",
]


def model_dir() -> pathlib.Path:
    root = os.environ.get("AGORA_MODELS")
    if root:
        base = pathlib.Path(root)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = pathlib.Path(cache) / "agora" / "models"
    return base / "smollm2-135m-instruct"


def main() -> None:
    torch.set_num_threads(int(os.environ.get("REF_THREADS", "2")))
    directory = model_dir()
    if not (directory / GGUF).is_file():
        sys.exit(f"{directory / GGUF} is missing: run scripts/fetch-models")
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=GGUF, dtype=torch.float32)
    model.eval()

    cases = []
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        input_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(
                torch.tensor([input_ids]),
                attention_mask=torch.ones(1, len(input_ids), dtype=torch.long),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tokenizer.eos_token_id,
            )
        output_ids = out.sequences[0, len(input_ids):].tolist()
        margins = []
        for scores in out.scores:
            top = torch.topk(scores[0].float(), 2).values
            margins.append(round(float(top[0] - top[1]), 5))
        cases.append(
            {
                "prompt": prompt,
                "chat_text": text,
                "input_ids": input_ids,
                "output_ids": output_ids,
                "output_text": tokenizer.decode(output_ids),
                "top2_margins": margins,
            }
        )
        print(f"{prompt!r}: {len(output_ids)} tokens, min margin {min(margins):.4f}: {tokenizer.decode(output_ids)!r}")

    # Extra tokenizer-only cases: digits, whitespace runs, non-ASCII and emoji, contractions.
    tokenizer_cases = []
    for text in [
        "What is 12345 + 678?",
        "Hello  world!\n\n  x",
        "héllo wörld 日本語 🙂 naïve café",
        "It's, we're, they'll; I'd've\t\ttabs   and    spaces ",
        "<|im_start|>user\nhi<|im_end|>\n",
    ]:
        tokenizer_cases.append({"text": text, "ids": tokenizer(text, add_special_tokens=False)["input_ids"]})

    result = {
        "model_file": GGUF,
        "generator": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, greedy",
        "new_tokens": NEW_TOKENS,
        "cases": cases,
        "tokenizer_cases": tokenizer_cases,
    }
    path = pathlib.Path(__file__).with_name("generation_reference.json")
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
