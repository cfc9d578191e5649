//! One OS thread owns the [`Engine`] (and so the model): HTTP handlers send it commands
//! (submit, abort, stats) over a channel and get each request's text, tokens and end back over
//! a tokio channel. The thread steps while it has work and blocks on its command channel when
//! idle. Detokenizing (with or without special tokens), stop strings and log-probabilities
//! are done here, per request, so that a stop string ends its request at once.

use crate::errors::ApiError;
use crate::logprobs::{self, Logprobs};
use crate::metrics::{EngineGauges, Metrics};
use crate::stop::StopMatcher;
use pio_engine::{Engine, FinishReason, RequestId, RequestOutput, RequestParams};
use pio_runtime::tokenizer::{DecodeState, Tokenizer};
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc as tmpsc, oneshot};

/// How one request's output is shaped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputOptions {
    /// Leave special tokens (`<|im_start|>`, ...) out of the text.
    pub skip_special_tokens: bool,
    pub stop: Vec<String>,
    pub include_stop: bool,
    /// Log-probabilities with this many alternatives per token (None: none).
    pub logprobs: Option<usize>,
}

/// One engine request.
#[derive(Clone, Debug)]
pub struct Submission {
    pub prompt: Vec<u32>,
    pub params: RequestParams,
    pub output: OutputOptions,
}

/// A generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenInfo {
    pub id: u32,
    pub logprobs: Option<Logprobs>,
}

/// How a request ended, as the HTTP side needs it.
#[derive(Clone, Debug, PartialEq)]
pub enum Finish {
    /// An eos/stop id or a stop string.
    Stop,
    /// `max_tokens` or the context.
    Length,
    /// This request failed (the others go on).
    Failed(String),
    /// The server ended it (shutting down).
    Aborted,
}

/// What a request's channel carries, tagged with its index in the submission.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Delta {
        text: String,
        tokens: Vec<TokenInfo>,
    },
    Done {
        finish: Finish,
        completion_tokens: usize,
    },
}

enum Command {
    Submit {
        subs: Vec<Submission>,
        arrived: Instant,
        events: tmpsc::UnboundedSender<(usize, Event)>,
        reply: oneshot::Sender<Result<Vec<RequestId>, ApiError>>,
    },
    Abort(Vec<RequestId>),
    AbortAll,
    Stats(oneshot::Sender<EngineGauges>),
    Shutdown,
}

/// The handlers' end of the engine thread.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Submit { .. } => "Submit",
            Command::Abort(_) => "Abort",
            Command::AbortAll => "AbortAll",
            Command::Stats(_) => "Stats",
            Command::Shutdown => "Shutdown",
        })
    }
}

/// Submitted requests: their events, and a guard that aborts them when dropped (a client
/// that went away, a handler that returned early).
#[derive(Debug)]
pub struct Submitted {
    pub events: tmpsc::UnboundedReceiver<(usize, Event)>,
    pub guard: AbortGuard,
}

/// Aborts its requests when dropped (ended ones are ignored by the engine thread).
#[derive(Debug)]
pub struct AbortGuard {
    tx: mpsc::Sender<Command>,
    ids: Vec<RequestId>,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            let _ = self.tx.send(Command::Abort(std::mem::take(&mut self.ids)));
        }
    }
}

fn gone() -> ApiError {
    ApiError::unavailable("the engine is not running (the server is shutting down)")
}

impl EngineHandle {
    /// Queues `subs` together (all or none): 429 when they would take the server past its
    /// limit, 400 when the engine refuses one.
    pub async fn submit(
        &self,
        subs: Vec<Submission>,
        arrived: Instant,
    ) -> Result<Submitted, ApiError> {
        let (events_tx, events) = tmpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Submit {
                subs,
                arrived,
                events: events_tx,
                reply,
            })
            .map_err(|_| gone())?;
        let ids = answer.await.map_err(|_| gone())??;
        Ok(Submitted {
            events,
            guard: AbortGuard {
                tx: self.tx.clone(),
                ids,
            },
        })
    }

    /// The engine's gauges (after the command queue ahead of this one).
    pub async fn stats(&self) -> Result<EngineGauges, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Stats(tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Ends every request now (each gets [`Finish::Aborted`]).
    pub fn abort_all(&self) {
        let _ = self.tx.send(Command::AbortAll);
    }

    /// Ends every request and stops the thread.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
    }
}

/// A request the thread is running.
struct Active {
    index: usize,
    events: tmpsc::UnboundedSender<(usize, Event)>,
    decoder: DecodeState,
    stop: StopMatcher,
    opts: OutputOptions,
    generated: usize,
    arrived: Instant,
    last_token: Option<Instant>,
}

struct Worker {
    engine: Engine,
    tokenizer: Tokenizer,
    special: HashSet<u32>,
    active: HashMap<RequestId, Active>,
    max_concurrent: usize,
    metrics: Arc<Metrics>,
}

/// Starts the engine thread; returns its handle and its join handle.
pub fn spawn(
    engine: Engine,
    max_concurrent: usize,
    metrics: Arc<Metrics>,
) -> std::io::Result<(EngineHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let tokenizer = engine.model().tokenizer().clone();
    let special = tokenizer
        .inner()
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, t)| t.special)
        .map(|(id, _)| id)
        .collect();
    let mut worker = Worker {
        engine,
        tokenizer,
        special,
        active: HashMap::new(),
        max_concurrent: max_concurrent.max(1),
        metrics,
    };
    let join = std::thread::Builder::new()
        .name("pio-engine".into())
        .spawn(move || worker.run(rx))?;
    Ok((EngineHandle { tx }, join))
}

fn finish_label(f: &Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::Failed(_) => "failed",
        Finish::Aborted => "aborted",
    }
}

impl Worker {
    fn run(&mut self, rx: mpsc::Receiver<Command>) {
        loop {
            if !self.engine.has_work() {
                match rx.recv() {
                    Ok(cmd) => {
                        if self.command(cmd) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            let mut stop = false;
            loop {
                match rx.try_recv() {
                    Ok(cmd) => {
                        if self.command(cmd) {
                            stop = true;
                            break;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        stop = true;
                        break;
                    }
                }
            }
            if stop {
                break;
            }
            if self.engine.has_work() {
                self.step();
            }
        }
        self.abort_all();
        // Report the aborts to the scheduler so that its blocks are all free.
        let _ = self.engine.step();
    }

    /// Handles one command; true to stop the thread.
    fn command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Submit {
                subs,
                arrived,
                events,
                reply,
            } => {
                let r = self.submit(subs, arrived, events);
                let _ = reply.send(r);
            }
            Command::Abort(ids) => {
                for id in ids {
                    if self.active.remove(&id).is_some() {
                        self.engine.abort(id);
                        self.metrics.count_finish("cancelled");
                    }
                }
            }
            Command::AbortAll => self.abort_all(),
            Command::Stats(tx) => {
                let _ = tx.send(EngineGauges {
                    stats: self.engine.stats(),
                    active: self.active.len(),
                    max_concurrent: self.max_concurrent,
                    steps: self.engine.steps(),
                });
            }
            Command::Shutdown => return true,
        }
        false
    }

    fn submit(
        &mut self,
        subs: Vec<Submission>,
        arrived: Instant,
        events: tmpsc::UnboundedSender<(usize, Event)>,
    ) -> Result<Vec<RequestId>, ApiError> {
        if self.active.len() + subs.len() > self.max_concurrent {
            return Err(ApiError::queue_full(self.max_concurrent));
        }
        let mut ids = Vec::with_capacity(subs.len());
        for (index, s) in subs.into_iter().enumerate() {
            let prompt_len = s.prompt.len();
            match self.engine.add_request(s.prompt, s.params) {
                Ok(id) => {
                    ids.push(id);
                    self.metrics
                        .prompt_tokens
                        .fetch_add(prompt_len as u64, Ordering::Relaxed);
                    self.active.insert(
                        id,
                        Active {
                            index,
                            events: events.clone(),
                            decoder: DecodeState::default(),
                            stop: StopMatcher::new(s.output.stop.clone(), s.output.include_stop),
                            opts: s.output,
                            generated: 0,
                            arrived,
                            last_token: None,
                        },
                    );
                }
                Err(e) => {
                    for id in ids {
                        self.active.remove(&id);
                        self.engine.abort(id);
                    }
                    return Err(ApiError::refused(e));
                }
            }
        }
        Ok(ids)
    }

    fn abort_all(&mut self) {
        let ids: Vec<RequestId> = self.active.keys().copied().collect();
        for id in ids {
            self.engine.abort(id);
            self.end(id, Finish::Aborted);
        }
    }

    /// Sends a request's end and forgets it.
    fn end(&mut self, id: RequestId, finish: Finish) {
        if let Some(a) = self.active.remove(&id) {
            self.metrics.count_finish(finish_label(&finish));
            self.metrics.e2e.observe(a.arrived.elapsed().as_secs_f64());
            let _ = a.events.send((
                a.index,
                Event::Done {
                    finish,
                    completion_tokens: a.generated,
                },
            ));
        }
    }

    fn step(&mut self) {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.engine.step()));
        let outputs = match result {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(e)) => return self.fail_all(format!("the engine step failed: {e}")),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                return self.fail_all(format!("the engine step panicked: {why}"));
            }
        };
        let now = Instant::now();
        let tokens: usize = outputs.iter().map(|o| o.new_tokens.len()).sum();
        self.metrics.record_step_tokens(tokens as u64, now);
        for out in outputs {
            self.output(out, now);
        }
    }

    /// A failed step: its requests cannot be trusted to continue; each ends with the error
    /// (a 500 for it) and the engine goes on with the next requests.
    fn fail_all(&mut self, message: String) {
        let ids: Vec<RequestId> = self.active.keys().copied().collect();
        for id in ids {
            self.engine.abort(id);
            self.end(id, Finish::Failed(message.clone()));
        }
    }

    fn output(&mut self, out: RequestOutput, now: Instant) {
        let id = out.id;
        let Some(a) = self.active.get_mut(&id) else {
            return;
        };
        let mut text = String::new();
        let mut tokens = Vec::with_capacity(out.new_tokens.len());
        let mut failed = None;
        for &t in &out.new_tokens {
            a.generated += 1;
            match a.last_token {
                None => self.metrics.ttft.observe((now - a.arrived).as_secs_f64()),
                Some(prev) => self.metrics.itl.observe((now - prev).as_secs_f64()),
            }
            a.last_token = Some(now);
            let lp = match (a.opts.logprobs, &out.logits) {
                (Some(n), Some(l)) => Some(logprobs::compute(l, t, n)),
                _ => None,
            };
            tokens.push(TokenInfo {
                id: t,
                logprobs: lp,
            });
            if a.opts.skip_special_tokens && self.special.contains(&t) {
                continue;
            }
            match a.decoder.push(&self.tokenizer, t) {
                Ok(Some(s)) => text.push_str(&s),
                Ok(None) => {}
                Err(e) => failed = Some(format!("detokenizing failed: {e}")),
            }
        }
        let mut finish = out.finish.map(|f| match f {
            FinishReason::Stop(_) => Finish::Stop,
            FinishReason::Length | FinishReason::ContextFull => Finish::Length,
            FinishReason::Aborted => Finish::Aborted,
            FinishReason::Failed => Finish::Failed(
                out.error
                    .clone()
                    .unwrap_or_else(|| "sampling failed".into()),
            ),
        });
        if finish.is_some() {
            match a.decoder.finish(&self.tokenizer) {
                Ok(Some(s)) => text.push_str(&s),
                Ok(None) => {}
                Err(e) => failed = Some(format!("detokenizing failed: {e}")),
            }
        }
        if let Some(message) = failed {
            self.engine.abort(id);
            return self.end(id, Finish::Failed(message));
        }
        let stopped = a.stop.push(&text);
        let mut emit = stopped.text;
        if stopped.matched.is_some() {
            if finish.is_none() {
                self.engine.abort(id);
            }
            finish = Some(Finish::Stop);
        } else if finish.is_some() {
            emit.push_str(&a.stop.finish());
        }
        if !emit.is_empty() || !tokens.is_empty() {
            let sent = a
                .events
                .send((a.index, Event::Delta { text: emit, tokens }));
            if sent.is_err() {
                // Nobody listens any more: the client went away.
                self.active.remove(&id);
                self.engine.abort(id);
                self.metrics.count_finish("cancelled");
                return;
            }
        }
        if let Some(f) = finish {
            self.end(id, f);
        }
    }
}
