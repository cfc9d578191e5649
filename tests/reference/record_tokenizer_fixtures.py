#!/usr/bin/env python3
"""Record the tokenizer and chat-template fixtures that pio's Rust tests compare against.

    pip install tokenizers transformers     # no torch needed: only the tokenizer parts are used
    python3 tests/reference/make_tiny_tokenizer.py   # if model-specs/tokenizers/qwen3-tiny is missing
    python3 tests/reference/record_tokenizer_fixtures.py

Writes:
- tests/fixtures/tokenizer/qwen3_ids.json       ids from Python `tokenizers` for the Qwen3 tokenizer
- tests/fixtures/tokenizer/qwen3_tiny_ids.json  the same strings through the tiny tokenizer
- tests/fixtures/chat/qwen3.json                HF `apply_chat_template` output, Qwen3-0.6B template
- tests/fixtures/chat/qwen3_instruct_2507.json  the same conversations, Qwen3-4B-Instruct-2507 template

Token ids come from `tokenizers.Tokenizer.encode(text, add_special_tokens=False)` (Qwen has no BOS,
and its post-processor adds nothing, so this is what HF's `tokenizer.encode` returns too; the
script asserts that). Added tokens written in the text, like `<|im_start|>`, are matched as
tokens. Rendered prompts come from `transformers.AutoTokenizer.apply_chat_template(...,
tokenize=False)`; `enable_thinking` is passed only when the case sets it (otherwise it is
undefined in the template, as when a caller does not pass it).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import jinja2
import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "model-specs" / "tokenizers"
FIXTURES = ROOT / "tests" / "fixtures"

GENERATED_BY = (
    f"tests/reference/record_tokenizer_fixtures.py with Python {platform.python_version()}, "
    f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__} "
    f"(tokenizer/chat-template code only, no torch), jinja2 {jinja2.__version__}"
)

TEXTS = [
    "Hello world",
    "",
    "The quick brown fox jumps over the lazy dog.",
    "   leading and trailing spaces   ",
    "a  b   c    d\n\n\n  \t  e",
    "tabs\tand\nnewlines\r\n\n\nmultiple\n",
    "Numbers: 1234567890 3.14159 -42 1e10 2025-07-01 ٣٤٥",
    "你好，世界！今天天气怎么样？",
    "日本語のテキストとカタカナ、한국어 텍스트",
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇯🇵 🦀",
    "Mixed: Привет мир, مرحبا بالعالم, שלום, Ελληνικά, हिन्दी, ไทย",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n\tlet v: Vec<u32> = (0..10).collect();\n\tprintln!(\"{v:?}\");\n}\n",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "<think>\nLet me think step by step.\n</think>\n\nThe answer is 4.",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<|endoftext|><|im_end|><|im_end|>x<|im_start|",
    "Contractions: don't, I'm, we'll, they've, she'd, IT'S, You'RE",
    "URL https://example.com/path?q=1&r=2#frag and e-mail a.b@c.org",
    "Accents: café naïve résumé Ångström",
    "NFD input: cafe\u0301 A\u030angstro\u0308m",
    "Odd whitespace: \u00a0nbsp \u200bzwsp \u3000ideographic \ufeffbom",
    "Control chars: \x00 \x1b[31m red \x7f",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "🦀 Rust crab 🤖 robot 🧑‍🚀 astronaut",
]


def encode_cases(tok: Tokenizer, hf) -> list[dict]:
    cases = []
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        hf_ids = hf.encode(text, add_special_tokens=False)
        assert hf_ids == ids, (text, ids, hf_ids)
        assert hf.encode(text) == ids, "Qwen adds no special tokens"
        decoded = tok.decode(ids, skip_special_tokens=False)
        cases.append(
            {"text": text, "ids": ids, "decoded": decoded, "roundtrip": decoded == text}
        )
    return cases


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")


def record_tokenizer(name: str, folder: str, out: str) -> None:
    tok = Tokenizer.from_file(str(SPECS / folder / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(SPECS / folder))
    data = {
        "generated_by": GENERATED_BY,
        "tokenizer": f"model-specs/tokenizers/{folder}/tokenizer.json",
        "description": f"{name}: ids from tokenizers.Tokenizer.encode(text, add_special_tokens=False); "
        "decoded = decode(ids, skip_special_tokens=False); roundtrip = (decoded == text)",
        "vocab_size_with_added": tok.get_vocab_size(with_added_tokens=True),
        "token_ids": {
            t: tok.token_to_id(t)
            for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
        },
        "cases": encode_cases(tok, hf),
    }
    write_json(FIXTURES / "tokenizer" / out, data)


def msg(role: str, content: str, reasoning_content: str | None = None) -> dict:
    m = {"role": role, "content": content}
    if reasoning_content is not None:
        m["reasoning_content"] = reasoning_content
    return m


THINK_ANSWER = "<think>\nThe user asks 2+2. That is 4.\n</think>\n\n2 + 2 = 4."

CHATS = [
    # name, messages, add_generation_prompt, enable_thinking (None = not passed)
    ("single_turn_gen", [msg("user", "Hello!")], True, None),
    ("single_turn_no_gen", [msg("user", "Hello!")], False, None),
    ("system_user_gen", [msg("system", "You are a helpful assistant."), msg("user", "Hi")], True, None),
    ("thinking_true_gen", [msg("user", "Why is the sky blue?")], True, True),
    ("thinking_false_gen", [msg("user", "Why is the sky blue?")], True, False),
    ("thinking_false_no_gen", [msg("user", "Why is the sky blue?")], False, False),
    ("thinking_true_no_gen", [msg("user", "Why is the sky blue?")], False, True),
    (
        "multi_turn_think_in_content_gen",
        [msg("user", "What is 2+2?"), msg("assistant", THINK_ANSWER), msg("user", "And 3+3?")],
        True,
        None,
    ),
    (
        "multi_turn_think_in_content_final_assistant",
        [msg("user", "What is 2+2?"), msg("assistant", THINK_ANSWER)],
        False,
        None,
    ),
    (
        "multi_turn_reasoning_content_gen_thinking_false",
        [
            msg("system", "Be brief."),
            msg("user", "What is 2+2?"),
            msg("assistant", "4", reasoning_content="\nSimple arithmetic.\n"),
            msg("user", "And 3+3?"),
        ],
        True,
        False,
    ),
    (
        "multi_turn_reasoning_content_final_assistant",
        [
            msg("user", "What is 2+2?"),
            msg("assistant", "4", reasoning_content="Simple arithmetic."),
            msg("user", "And 3+3?"),
            msg("assistant", "\n6", reasoning_content="\n\nAlso simple.\n\n"),
        ],
        False,
        True,
    ),
    (
        "multi_turn_plain_assistant_history",
        [
            msg("system", "You are Qwen."),
            msg("user", "Hi"),
            msg("assistant", "Hello! How can I help?"),
            msg("user", "Tell me a joke."),
            msg("assistant", "Why did the chicken cross the road?"),
            msg("user", "Why?"),
        ],
        True,
        None,
    ),
    (
        "tool_response_user_turn",
        [
            msg("user", "Weather in Paris?"),
            msg("assistant", "<think>\nNeed the tool.\n</think>\n\nLet me check."),
            msg("user", "<tool_response>\n{\"temp\": 21}\n</tool_response>"),
            msg("assistant", "<think>\nIt is 21.\n</think>\n\nIt is 21 °C in Paris."),
        ],
        True,
        None,
    ),
    (
        "tool_role_messages",
        [
            msg("user", "Weather in Paris?"),
            msg("assistant", "Checking."),
            msg("tool", "{\"temp\": 21}"),
            msg("tool", "{\"humidity\": 40}"),
        ],
        True,
        None,
    ),
    (
        "unicode_and_markup_content",
        [
            msg("system", "答えは日本語で。 🙂"),
            msg("user", "  padded  \n\nwith <|im_end|> inside and 👨‍👩‍👧 emoji  "),
        ],
        True,
        False,
    ),
    ("system_not_first", [msg("user", "Hi"), msg("system", "Late system note."), msg("user", "Again")], True, None),
    ("empty_contents", [msg("system", ""), msg("user", ""), msg("assistant", "")], False, None),
]


def record_chat(folder: str, out: str, description: str) -> None:
    tok_dir = SPECS / folder
    if not (tok_dir / "tokenizer.json").exists():
        # The 2507 folder has only tokenizer_config.json: it uses the qwen3 tokenizer.json.
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp())
        shutil.copy(SPECS / "qwen3" / "tokenizer.json", tmp / "tokenizer.json")
        shutil.copy(tok_dir / "tokenizer_config.json", tmp / "tokenizer_config.json")
        tok_dir = tmp
    hf = AutoTokenizer.from_pretrained(str(tok_dir))
    cases = []
    for name, messages, agp, thinking in CHATS:
        kwargs = {"add_generation_prompt": agp}
        if thinking is not None:
            kwargs["enable_thinking"] = thinking
        rendered = hf.apply_chat_template(messages, tokenize=False, **kwargs)
        ids = hf.apply_chat_template(messages, tokenize=True, return_dict=False, **kwargs)
        cases.append(
            {
                "name": name,
                "messages": messages,
                "add_generation_prompt": agp,
                "enable_thinking": thinking,
                "rendered": rendered,
                "ids": list(ids),
            }
        )
    write_json(
        FIXTURES / "chat" / out,
        {
            "generated_by": GENERATED_BY,
            "tokenizer_config": f"model-specs/tokenizers/{folder}/tokenizer_config.json",
            "description": description,
            "cases": cases,
        },
    )


def main() -> None:
    record_tokenizer("Qwen3", "qwen3", "qwen3_ids.json")
    record_tokenizer("qwen3-tiny (vocab 512)", "qwen3-tiny", "qwen3_tiny_ids.json")
    common = (
        "rendered = AutoTokenizer.apply_chat_template(messages, tokenize=False, "
        "add_generation_prompt=..., [enable_thinking=... only when not null]); ids = the same with "
        "tokenize=True (tokenizer.json of model-specs/tokenizers/qwen3)."
    )
    record_chat("qwen3", "qwen3.json", "Qwen3-0.6B hybrid-thinking template. " + common)
    record_chat(
        "qwen3-instruct-2507",
        "qwen3_instruct_2507.json",
        "Qwen3-4B-Instruct-2507 non-thinking template (enable_thinking is ignored). " + common,
    )


if __name__ == "__main__":
    main()
