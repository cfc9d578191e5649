#!/usr/bin/env python3
"""Derive the tiny Qwen3-style tokenizer (vocab 512) used by pio's small test models.

Reproducible: the output depends only on model-specs/tokenizers/qwen3/{tokenizer.json,
tokenizer_config.json}. Run from anywhere:

    pip install tokenizers            # only needed for the checks at the end
    python3 tests/reference/make_tiny_tokenizer.py

What it keeps from the Qwen3 tokenizer:
- Qwen ids 0..502 with their strings: the 256 byte-level symbols (ids 0..255) and the tokens
  made by the first 247 merges (ids 256..502);
- only the merges whose two parts and result all have an id < 503 (in Qwen's merge order);
- the same normalizer (NFC), pre-tokenizer (split regex + ByteLevel), post-processor and
  decoder (ByteLevel).
Added tokens get ids 503..511: <|endoftext|>, <|im_start|>, <|im_end|> (special), and
<think>, </think>, <tool_call>, </tool_call>, <tool_response>, </tool_response> (special=false,
as Qwen marks them).

Writes model-specs/tokenizers/qwen3-tiny/{tokenizer.json, tokenizer_config.json}.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "model-specs" / "tokenizers" / "qwen3"
DST = ROOT / "model-specs" / "tokenizers" / "qwen3-tiny"

KEEP = 503  # Qwen ids 0..502
VOCAB_SIZE = 512
ADDED = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<think>", False),
    ("</think>", False),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
]


def build_tokenizer_json(src: dict) -> dict:
    model = src["model"]
    assert model["type"] == "BPE"
    vocab = {tok: i for tok, i in model["vocab"].items() if i < KEEP}
    assert sorted(vocab.values()) == list(range(KEEP)), "Qwen ids 0..502 must all exist"

    merges = []
    for merge in model["merges"]:
        a, b = merge if isinstance(merge, list) else merge.split(" ", 1)
        parts = (model["vocab"].get(a), model["vocab"].get(b), model["vocab"].get(a + b))
        if all(p is not None and p < KEEP for p in parts):
            merges.append([a, b])
    # Every kept non-byte token must be producible by a kept merge.
    produced = {vocab[a + b] for a, b in merges}
    assert produced == set(range(256, KEEP)), "a kept token has no kept merge"

    src_added = {t["content"]: t for t in src["added_tokens"]}
    added_tokens = []
    for offset, (content, special) in enumerate(ADDED):
        base = src_added[content]
        assert base["special"] == special, (content, base["special"])
        entry = dict(base)
        entry["id"] = KEEP + offset
        added_tokens.append(entry)

    out = {}
    for key, value in src.items():  # keep the source's key order
        if key == "added_tokens":
            out[key] = added_tokens
        elif key == "model":
            new_model = {k: v for k, v in value.items()}
            new_model["vocab"] = vocab
            new_model["merges"] = merges
            out[key] = new_model
        else:
            out[key] = value
    return out


def build_tokenizer_config(src_cfg: dict, added_tokens: list[dict]) -> dict:
    decoder = {}
    for t in added_tokens:
        decoder[str(t["id"])] = {
            "content": t["content"],
            "lstrip": t["lstrip"],
            "normalized": t["normalized"],
            "rstrip": t["rstrip"],
            "single_word": t["single_word"],
            "special": t["special"],
        }
    out = {}
    for key, value in src_cfg.items():
        if key == "added_tokens_decoder":
            out[key] = decoder
        elif key == "additional_special_tokens":
            out[key] = [t for t in value if t in {c for c, _ in ADDED}]
        else:
            out[key] = value
    assert out["eos_token"] == "<|im_end|>" and out["pad_token"] == "<|endoftext|>"
    return out


def check(tok_path: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB_SIZE, tok.get_vocab_size()
    assert max(tok.get_vocab(with_added_tokens=True).values()) == VOCAB_SIZE - 1
    for i, (content, _) in enumerate(ADDED):
        assert tok.token_to_id(content) == KEEP + i, content
    samples = [
        "Hello world",
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        "The quick brown fox jumps over the lazy dog. 12345",
        "    def f(x):\n        return x * 2\n",
        "你好，世界 🙂 Grüße",
        "",
    ]
    for s in samples:
        ids = tok.encode(s, add_special_tokens=False).ids
        assert all(0 <= i < VOCAB_SIZE for i in ids), (s, ids)
        assert tok.decode(ids, skip_special_tokens=False) == s, (s, ids)
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False).ids
    assert ids[0] == 504 and ids[-1] == 505, ids
    print(f"ok: vocab {VOCAB_SIZE}, {len(samples)} samples round-trip, every id < {VOCAB_SIZE}")


def main() -> None:
    src = json.loads((SRC / "tokenizer.json").read_text(encoding="utf-8"))
    src_cfg = json.loads((SRC / "tokenizer_config.json").read_text(encoding="utf-8"))
    tiny = build_tokenizer_json(src)
    cfg = build_tokenizer_config(src_cfg, tiny["added_tokens"])
    DST.mkdir(parents=True, exist_ok=True)
    (DST / "tokenizer.json").write_text(
        json.dumps(tiny, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (DST / "tokenizer_config.json").write_text(
        json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    print(f"wrote {DST}: {len(tiny['model']['vocab'])} vocab + {len(tiny['added_tokens'])} added, "
          f"{len(tiny['model']['merges'])} merges")
    check(DST / "tokenizer.json")


if __name__ == "__main__":
    main()
