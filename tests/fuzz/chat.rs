//! Chat template targets: `chat_config` (a mutated tokenizer_config.json, rendered with a fixed
//! conversation) and `chat_messages` (hostile conversations rendered with the real Qwen3
//! templates). Inputs of `chat_messages` are text: an optional first line `!OPTIONS` (`gen`:
//! add_generation_prompt; `think=true|false`; `tpl=instruct|tiny` for another template), then
//! messages, each starting with a line `@@ ROLE`; a line `@@reasoning` inside a message starts
//! its reasoning_content.

use std::sync::OnceLock;

use pio_runtime::chat::{ChatError, ChatOptions, ChatTemplate, Message};

use crate::target::{repo, Target};

pub const CONFIG: Target = Target {
    name: "chat_config",
    input_file: "tokenizer_config.json",
    max_len: 64 << 10,
    setup: |_| {},
    run: |ctx, bytes| {
        let label = ctx.input.display().to_string();
        match ChatTemplate::from_tokenizer_config_bytes(bytes, &label) {
            Err(e) => located(&e, &label),
            Ok(t) => {
                let msgs = [
                    Message::system("sys"),
                    Message::user("hi"),
                    Message::assistant("a").with_reasoning("r"),
                    Message::user("again"),
                ];
                let opts = ChatOptions {
                    add_generation_prompt: true,
                    enable_thinking: Some(false),
                };
                match t.render(&msgs, &opts) {
                    Ok(_) => Ok(()),
                    Err(e) => located(&e, &label),
                }
            }
        }
    },
    mutate: None,
    known: crate::target::none_known,
};

/// Config errors name the file; template errors carry a line of the template.
fn located(e: &ChatError, label: &str) -> Result<(), String> {
    let msg = e.to_string();
    let ok = match e {
        ChatError::Io { .. } | ChatError::Config { .. } | ChatError::MissingTemplate { .. } => {
            msg.contains(label)
        }
        ChatError::Syntax { line, .. } | ChatError::Render { line, .. } => line.is_some(),
        // A template read from a file names that file (and, inside, the line when known).
        ChatError::InFile { path, .. } => !path.as_os_str().is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unlocated error: {msg}"))
    }
}

fn template(which: &str) -> &'static ChatTemplate {
    static T: OnceLock<[ChatTemplate; 3]> = OnceLock::new();
    let load = |dir: &str| {
        ChatTemplate::from_tokenizer_config(
            &repo()
                .join("model-specs/tokenizers")
                .join(dir)
                .join("tokenizer_config.json"),
        )
        .unwrap()
    };
    let t = T.get_or_init(|| {
        [
            load("qwen3"),
            load("qwen3-instruct-2507"),
            load("qwen3-tiny"),
        ]
    });
    match which {
        "instruct" => &t[1],
        "tiny" => &t[2],
        _ => &t[0],
    }
}

/// Decodes a `chat_messages` input.
pub fn decode(bytes: &[u8]) -> (Vec<Message>, ChatOptions, String) {
    let text = String::from_utf8_lossy(bytes);
    let mut opts = ChatOptions {
        add_generation_prompt: false,
        enable_thinking: None,
    };
    let mut tpl = String::new();
    let mut msgs: Vec<Message> = Vec::new();
    let mut in_reasoning = false;
    for (i, line) in text.split('\n').enumerate() {
        if i == 0 && line.starts_with('!') {
            for w in line[1..].split_whitespace() {
                match w {
                    "gen" => opts.add_generation_prompt = true,
                    "think=true" => opts.enable_thinking = Some(true),
                    "think=false" => opts.enable_thinking = Some(false),
                    _ => {
                        if let Some(t) = w.strip_prefix("tpl=") {
                            tpl = t.to_string();
                        }
                    }
                }
            }
        } else if let Some(role) = line.strip_prefix("@@ ") {
            msgs.push(Message::new(role, ""));
            in_reasoning = false;
        } else if line == "@@reasoning" && !msgs.is_empty() {
            in_reasoning = true;
            msgs.last_mut().unwrap().reasoning_content = Some(String::new());
        } else {
            if msgs.is_empty() {
                msgs.push(Message::user(""));
            }
            let m = msgs.last_mut().unwrap();
            let s = if in_reasoning {
                m.reasoning_content.get_or_insert_with(String::new)
            } else {
                &mut m.content
            };
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(line);
        }
    }
    (msgs, opts, tpl)
}

pub const MESSAGES: Target = Target {
    name: "chat_messages",
    input_file: "messages.txt",
    max_len: 1 << 20,
    setup: |_| {
        template("");
    },
    run: |_, bytes| {
        let (msgs, opts, tpl) = decode(bytes);
        match template(&tpl).render(&msgs, &opts) {
            Err(e) => located(&e, "<template>"),
            Ok(out) => {
                // A user message is written verbatim: nothing in it is evaluated.
                for m in msgs.iter().filter(|m| m.role == "user") {
                    if !out.contains(&m.content) {
                        return Err(format!(
                            "user message {:?} is not in the output",
                            truncate(&m.content)
                        ));
                    }
                }
                Ok(())
            }
        }
    },
    mutate: None,
    known: crate::target::none_known,
};

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}
