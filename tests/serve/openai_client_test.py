#!/usr/bin/env python3
"""`pio serve` against the real `openai` Python client (and curl for raw SSE framing).

Starts the given `pio` binary as `pio serve` on the tiny spec with random weights, on
127.0.0.1 with a free port, and checks: models, chat, completions, streaming with usage, stop
strings, seeds, a tool-call round trip, error cases as the client's exceptions, a bounded load
test (64 concurrent streaming clients, some closing mid-stream), /metrics afterwards (no KV
block in use, nothing running), the raw SSE framing with curl, and a clean exit on SIGTERM.

Usage: openai_client_test.py PATH/TO/pio
"""

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import openai

TIMEOUT = 120  # seconds for the whole script, a safety net
MODEL = "Qwen3-tiny"


def start(pio):
    proc = subprocess.Popen(
        [pio, "serve", "--spec", "qwen3-tiny", "--device", "cpu", "--port", "0",
         "--max-concurrent", "96", "--kv-blocks", "1024", "--max-running", "64",
         "--shutdown-timeout", "2"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    addr = [None]
    ready = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            m = re.search(r"on http://(\S+)", line)
            if m and addr[0] is None:
                addr[0] = m.group(1)
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60) or addr[0] is None:
        proc.kill()
        sys.exit("pio serve did not start:\n" + "".join(lines))
    return proc, addr[0], lines


def metrics(base):
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def basic(client):
    models = client.models.list()
    check([m.id for m in models.data] == [MODEL], f"models: {models}")

    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=8,
        temperature=0)
    check(chat.object == "chat.completion", chat)
    choice = chat.choices[0]
    check(choice.message.role == "assistant", chat)
    check(isinstance(choice.message.content, str), chat)
    check(choice.finish_reason in ("stop", "length"), chat)
    check(chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens,
          chat.usage)

    comp = client.completions.create(model=MODEL, prompt="Hello", max_tokens=5,
                                     extra_body={"ignore_eos": True})
    check(comp.choices[0].finish_reason == "length" and comp.usage.completion_tokens == 5, comp)

    # Streaming with include_usage: role first, one finish, usage in a last chunk alone.
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    chunks = list(stream)
    check(chunks[0].choices[0].delta.role == "assistant", chunks[0])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    check([f for f in finishes if f] == ["length"], finishes)
    check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6, chunks[-1])
    check(all(c.usage is None for c in chunks[:-1]), "usage before the last chunk")


def stop_and_seed(client):
    # Seeded sampling (greedy decoding of random weights repeats itself).
    base = dict(model=MODEL, prompt="Hello", max_tokens=40, temperature=1.0, seed=11,
                extra_body={"ignore_eos": True, "top_k": 0})
    full = client.completions.create(**base).choices[0].text
    stop = None
    for k in range(len(full) // 3, len(full) - 3):
        s = full[k:k + 3]
        if s.strip() and full.find(s) == k:
            stop, at = s, k
            break
    check(stop is not None, f"no stop string in {full!r}")
    got = client.completions.create(stop=[stop], **base).choices[0]
    check(got.text == full[:at] and got.finish_reason == "stop", (stop, got, full))
    streamed = "".join(c.choices[0].text for c in
                       client.completions.create(stop=stop, stream=True, **base) if c.choices)
    check(streamed == full[:at], (stop, streamed, full))

    def sampled(seed):
        return client.completions.create(
            model=MODEL, prompt="Seed", max_tokens=16, temperature=1.0, top_p=1.0, seed=seed,
            extra_body={"ignore_eos": True, "top_k": 0}).choices[0].text
    a = sampled(7)
    check(a == sampled(7), "same seed, other text")
    check(any(sampled(s) != a for s in range(8, 13)), "five seeds gave the same text")


def tools(client):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    r = client.chat.completions.create(
        model=MODEL, max_tokens=4, tools=tools, tool_choice="auto",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
        ])
    check(r.choices[0].finish_reason in ("stop", "length", "tool_calls"), r)
    plain = client.chat.completions.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "Weather in Paris?"}])
    with_tools = client.chat.completions.create(
        model=MODEL, max_tokens=1, tools=tools,
        messages=[{"role": "user", "content": "Weather in Paris?"}])
    check(with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 50,
          "tools did not reach the template")


def errors(client):
    def expect(exc, status, **kw):
        try:
            client.chat.completions.create(**kw)
        except exc as e:
            check(e.status_code == status, (kw, e))
            return e
        raise AssertionError(f"no {exc.__name__} for {kw}")
    msgs = [{"role": "user", "content": "x"}]
    e = expect(openai.BadRequestError, 400, model=MODEL, messages=msgs, top_p=1.5)
    check(e.body.get("param") == "top_p", e.body)
    expect(openai.BadRequestError, 400, model=MODEL, messages=msgs, max_tokens=-1)
    expect(openai.NotFoundError, 404, model="gpt-nope", messages=msgs)
    e = expect(openai.BadRequestError, 400, model=MODEL,
               messages=[{"role": "user", "content": "word " * 700}])
    check(e.body.get("code") == "context_length_exceeded", e.body)
    expect(openai.BadRequestError, 400, model=MODEL, messages=msgs,
           extra_body={"temperature": "hot"})
    expect(openai.APIStatusError, 413, model=MODEL,
           messages=[{"role": "user", "content": "a" * (5 << 20)}])


def load(base, n=64):
    """n concurrent streaming clients; every fourth closes after two chunks."""
    results = [None] * n

    def one(i):
        c = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=60)
        try:
            stream = c.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Client {i}"}],
                max_tokens=12, stream=True, stream_options={"include_usage": True},
                extra_body={"ignore_eos": True})
            got = 0
            finish = None
            usage = None
            for chunk in stream:
                got += 1
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
                if chunk.usage:
                    usage = chunk.usage
                if i % 4 == 3 and got == 2:
                    stream.close()
                    results[i] = "closed"
                    return
            results[i] = ("done", finish, usage.completion_tokens if usage else None)
        except Exception as e:  # noqa: BLE001: reported below
            results[i] = ("error", repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    took = time.time() - started
    closed = sum(r == "closed" for r in results)
    done = [r for r in results if isinstance(r, tuple) and r[0] == "done"]
    bad = [r for r in results if r != "closed" and not (isinstance(r, tuple) and r[0] == "done")]
    check(not bad, f"failed clients: {bad[:5]}")
    check(all(r[1] == "length" and r[2] == 12 for r in done), f"incomplete: {done[:5]}")
    check(closed == n // 4 and len(done) == n - n // 4, (closed, len(done)))
    print(f"load: {n} streams ({closed} closed mid-way) in {took:.1f}s")
    # Every KV block free again, nothing running.
    deadline = time.time() + 15
    while True:
        m = metrics(base)
        if (m["pio_kv_blocks_used"] == 0 and m["pio_requests_running"] == 0
                and m["pio_requests_waiting"] == 0):
            break
        check(time.time() < deadline, f"not idle: {m}")
        time.sleep(0.1)
    ok = m.get('pio_requests_total{endpoint="/v1/chat/completions",status="200"}', 0)
    check(ok >= n, f"metrics counted {ok} chat responses")
    check(m['pio_request_finish_total{reason="cancelled"}'] >= 1, m)


def curl_sse(base):
    if shutil.which("curl") is None:
        print("curl not found: raw SSE framing not checked")
        return
    body = json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": 3, "stream": True,
                       "ignore_eos": True})
    out = subprocess.run(
        ["curl", "-sS", "-N", "--max-time", "30", "-H", "Content-Type: application/json",
         "-d", body, base + "/v1/completions"], capture_output=True, check=True).stdout.decode()
    events = out.split("\n\n")
    check(events[-1] == "" and events[-2] == "data: [DONE]", repr(out[-80:]))
    for e in events[:-2]:
        check(e.startswith("data: {") and "\n" not in e, repr(e))
        json.loads(e[len("data: "):])
    check(len(events) - 2 >= 3, repr(out))


def load_gen(base):
    """The repo's load generator (benches/reference/load_gen.py) against the server: fixed
    concurrency and Poisson arrivals complete every request at its exact length; an unknown
    model makes every request an error and the generator exit 1."""
    import os
    import tempfile

    script = os.path.join(os.path.dirname(__file__), "..", "..", "benches", "reference", "load_gen.py")
    common = ["--url", base, "--prompt-len", "24", "--max-tokens", "7"]
    with tempfile.TemporaryDirectory() as d:
        for mode in (["--concurrency", "8", "--requests", "16"], ["--rate", "40", "--requests", "6"]):
            out = os.path.join(d, "report.json")
            r = subprocess.run([sys.executable, script, "--model", MODEL, *mode, *common, "--out", out],
                               capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, f"load_gen {mode}: {r.returncode}\n{r.stderr}")
            rep = json.load(open(out))
            n = int(mode[3])
            check(rep["completed"] == n and rep["errors"] == 0, rep)
            check(rep["output_tokens"] == 7 * n, rep)
            check(rep["ttft_ms"]["p50"] > 0 and rep["itl_ms"]["p99"] >= rep["itl_ms"]["p50"], rep)
            check(rep["output_tokens_per_s"] > 0, rep)
        r = subprocess.run([sys.executable, script, "--model", "no-such-model", "--requests", "2", *common],
                           capture_output=True, text=True, timeout=60)
        rep = json.loads(r.stdout)
        check(r.returncode == 1 and rep["errors"] == 2 and "404" in rep["first_errors"][0], (r.returncode, rep))


def main():
    pio = sys.argv[1]
    proc, addr, lines = start(pio)
    base = f"http://{addr}"
    watchdog = threading.Timer(TIMEOUT, lambda: (proc.kill(), print("timed out")))
    watchdog.start()
    try:
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0,
                               timeout=60)
        for step in (basic, stop_and_seed, tools, errors):
            step(client)
            print(f"ok: {step.__name__}")
        curl_sse(base)
        print("ok: curl")
        load(base)
        print("ok: load")
        load_gen(base)
        print("ok: load_gen")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        check(rc == 0, f"exit status {rc} after SIGTERM:\n" + "".join(lines))
        print("ok: SIGTERM, exit 0")
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    print("all passed")


if __name__ == "__main__":
    main()
