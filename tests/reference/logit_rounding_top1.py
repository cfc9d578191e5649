#!/usr/bin/env python3
"""Would f32 logits close the Llama top-1 gap of issue 17? On the CPU, HF transformers: the
bf16 model's top-1 against the f32 model's, with its logits rounded to bf16 (as HF-bf16 reports
them) and computed in f32 from the same bf16 hidden state (the final norm's output times the
LM head in f32). Teacher-forced, one forward over N positions of real text (Qwen's tokenizer,
ids modulo the vocabulary), on a directory written by `pio init-weights`.
Usage: python3 tests/reference/logit_rounding_top1.py WEIGHTS_DIR [N]
Needs torch and transformers (CPU is enough for Llama-3.2-1B's shapes: about 8 GB of memory)."""
import sys

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

wdir, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1024
tok = Tokenizer.from_file("model-specs/tokenizers/qwen3/tokenizer.json")
text = open("tests/reference/hf_parity.py").read() * 4
ids = tok.encode(text).ids
m32 = AutoModelForCausalLM.from_pretrained(wdir, dtype=torch.float32, attn_implementation="eager")
vocab = m32.config.vocab_size
x = torch.tensor([[i % vocab for i in ids[:n]]])
with torch.no_grad():
    l32 = m32(x).logits[0]
    w32 = m32.lm_head.weight.detach().clone()
    del m32
    mb = AutoModelForCausalLM.from_pretrained(wdir, dtype=torch.bfloat16, attn_implementation="eager")
    h = mb.model(x).last_hidden_state[0]
    bf16_logits = mb.lm_head(h).float()
    f32_logits = h.float() @ w32.T
a32 = l32.argmax(-1)


def top1(logits):
    return float((logits.argmax(-1) == a32).float().mean())


ties = (bf16_logits == bf16_logits.max(-1, keepdim=True).values).sum(-1) > 1
print(f"{n} positions: top-1 against f32 with bf16 logits {top1(bf16_logits):.4f}, with f32 logits "
      f"{top1(f32_logits):.4f}; rows whose bf16 maximum is tied {float(ties.float().mean()):.4f}")
