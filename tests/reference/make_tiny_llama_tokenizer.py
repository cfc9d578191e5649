#!/usr/bin/env python3
"""Derive the Llama-3-style stand-in tokenizers pio's Llama specs use with random weights.

Reproducible: the output depends only on model-specs/tokenizers/qwen3-tiny/tokenizer.json (the
byte-level BPE vocabulary and merges, ids 0..502) and model-specs/tokenizers/llama3/
tokenizer_config.json (its chat template). Run from anywhere:

    pip install tokenizers            # only needed for the checks at the end
    python3 tests/reference/make_tiny_llama_tokenizer.py

It is a stand-in for tests, not Llama's tokenizer: the regular vocabulary is the tiny Qwen one.
What it takes from Llama 3 is what the engine has to handle: special tokens written as Llama's
(ids 503..511 here, 128000.. in the real model) and a post-processor that puts
<|begin_of_text|> before every encoded text (HF's `encode(text)` adds it; a chat template writes
it itself, so chat prompts are encoded without it).

Writes model-specs/tokenizers/llama3-tiny/{tokenizer.json, tokenizer_config.json} (vocab 512:
the special tokens at 503..511), and model-specs/tokenizers/llama3-standin/tokenizer.json (the
same regular vocabulary with Llama 3's 256 special tokens at their real ids 128000..128255, as
tokenizers/llama3/tokenizer_config.json lists them): the tokenizer of the real-size Llama
specs with random weights, so that their chat template, special tokens and eos ids agree. A
real checkpoint's own tokenizer.json always replaces it.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "model-specs" / "tokenizers" / "qwen3-tiny" / "tokenizer.json"
LLAMA_CFG = ROOT / "model-specs" / "tokenizers" / "llama3" / "tokenizer_config.json"
DST = ROOT / "model-specs" / "tokenizers" / "llama3-tiny"
STANDIN = ROOT / "model-specs" / "tokenizers" / "llama3-standin"

KEEP = 503
VOCAB_SIZE = 512
ADDED = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
]
BOS = "<|begin_of_text|>"


def added_entry(i: int, content: str) -> dict:
    return {
        "id": KEEP + i,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def build_tokenizer_json(src: dict, added: list[dict] | None = None) -> dict:
    out = dict(src)
    if added:
        # HF tokenizers numbers added tokens right after the model's vocabulary: fill ids
        # KEEP..(first special - 1) with placeholders that no merge produces (never emitted by
        # encode; they decode as themselves).
        model = dict(src["model"])
        vocab = dict(model["vocab"])
        for i in range(KEEP, added[0]["id"]):
            vocab[f"<standin_{i}>"] = i
        model["vocab"] = vocab
        out["model"] = model
    out["added_tokens"] = added or [added_entry(i, c) for i, c in enumerate(ADDED)]
    bos_id = next(t["id"] for t in out["added_tokens"] if t["content"] == BOS)
    out["post_processor"] = {
        "type": "Sequence",
        "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {
                "type": "TemplateProcessing",
                "single": [
                    {"SpecialToken": {"id": BOS, "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                ],
                "pair": [
                    {"SpecialToken": {"id": BOS, "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": BOS, "type_id": 1}},
                    {"Sequence": {"id": "B", "type_id": 1}},
                ],
                "special_tokens": {BOS: {"id": BOS, "ids": [bos_id], "tokens": [BOS]}},
            },
        ],
    }
    return out


def build_tokenizer_config(llama_cfg: dict) -> dict:
    decoder = {}
    for i, c in enumerate(ADDED):
        e = added_entry(i, c)
        decoder[str(e["id"])] = {k: e[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
    return {
        "added_tokens_decoder": decoder,
        "bos_token": BOS,
        "chat_template": llama_cfg["chat_template"],
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 512,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def check(tok_path: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB_SIZE, tok.get_vocab_size()
    for i, content in enumerate(ADDED):
        assert tok.token_to_id(content) == KEEP + i, content
    plain = tok.encode("Hello world", add_special_tokens=False).ids
    with_bos = tok.encode("Hello world").ids
    assert with_bos == [KEEP] + plain, (with_bos, plain)
    chat = "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
    ids = tok.encode(chat, add_special_tokens=False).ids
    assert ids[0] == KEEP + 2 and ids[-1] == KEEP + 4, ids
    assert tok.decode(ids, skip_special_tokens=False) == chat
    print(f"ok: vocab {VOCAB_SIZE}, BOS {KEEP} added by encode(), specials at {KEEP}..{VOCAB_SIZE - 1}")


def standin_added(llama_cfg: dict) -> list[dict]:
    """Llama 3's special tokens at their own ids, from its tokenizer_config.json."""
    out = []
    for i, t in sorted(llama_cfg["added_tokens_decoder"].items(), key=lambda kv: int(kv[0])):
        out.append({"id": int(i), "content": t["content"], "single_word": t["single_word"],
                    "lstrip": t["lstrip"], "rstrip": t["rstrip"], "normalized": t["normalized"],
                    "special": t["special"]})
    assert out[0]["id"] == 128000 and out[0]["content"] == BOS and len(out) == 256
    return out


def check_standin(tok_path: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    for name, want in [(BOS, 128000), ("<|end_of_text|>", 128001), ("<|eot_id|>", 128009),
                       ("<|start_header_id|>", 128006), ("<|end_header_id|>", 128007)]:
        assert tok.token_to_id(name) == want, name
    ids = tok.encode("Hello").ids
    assert ids[0] == 128000 and all(i < KEEP for i in ids[1:]), ids
    print(f"ok: stand-in, Llama 3 special tokens at 128000..128255, BOS added by encode()")


def main() -> None:
    src = json.loads(SRC.read_text(encoding="utf-8"))
    llama_cfg = json.loads(LLAMA_CFG.read_text(encoding="utf-8"))
    DST.mkdir(parents=True, exist_ok=True)
    (DST / "tokenizer.json").write_text(
        json.dumps(build_tokenizer_json(src), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (DST / "tokenizer_config.json").write_text(
        json.dumps(build_tokenizer_config(llama_cfg), ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    print(f"wrote {DST}")
    check(DST / "tokenizer.json")
    STANDIN.mkdir(parents=True, exist_ok=True)
    (STANDIN / "tokenizer.json").write_text(
        # One line: its 128,000-entry vocabulary is mostly placeholders.
        json.dumps(build_tokenizer_json(src, standin_added(llama_cfg)), ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {STANDIN}")
    check_standin(STANDIN / "tokenizer.json")


if __name__ == "__main__":
    main()
