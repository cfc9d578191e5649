//! Parity of `pio_runtime::chat` with HF transformers' `apply_chat_template`.
//!
//! Fixtures: `tests/fixtures/chat/*.json`, recorded by
//! `tests/reference/record_tokenizer_fixtures.py`.

use std::path::{Path, PathBuf};

use pio_runtime::chat::{ChatError, ChatExtras, ChatOptions, ChatTemplate, Message, TemplateValue};
use pio_runtime::tokenizer::Tokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    generated_by: String,
    tokenizer_config: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    enable_thinking: Option<bool>,
    rendered: String,
    ids: Vec<u32>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn qwen3_tokenizer() -> Tokenizer {
    Tokenizer::from_file(&repo_root().join("model-specs/tokenizers/qwen3/tokenizer.json")).unwrap()
}

fn check_fixture(name: &str) {
    let path = repo_root().join("tests/fixtures/chat").join(name);
    let fixture: Fixture =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("fixture JSON");
    assert!(fixture.generated_by.contains("transformers"));
    let template =
        ChatTemplate::from_tokenizer_config(&repo_root().join(&fixture.tokenizer_config)).unwrap();
    assert_eq!(
        template
            .special_tokens()
            .get("eos_token")
            .map(String::as_str),
        Some("<|im_end|>")
    );
    let tok = qwen3_tokenizer();
    assert!(fixture.cases.len() >= 10);
    for case in &fixture.cases {
        let opts = ChatOptions {
            add_generation_prompt: case.add_generation_prompt,
            enable_thinking: case.enable_thinking,
        };
        let rendered = template
            .render(&case.messages, &opts)
            .unwrap_or_else(|e| panic!("{name}/{}: {e}", case.name));
        assert_eq!(rendered, case.rendered, "{name}/{}", case.name);
        assert_eq!(
            tok.encode(&rendered).unwrap(),
            case.ids,
            "{name}/{}: ids",
            case.name
        );
    }
}

#[test]
fn qwen3_template_matches_transformers() {
    check_fixture("qwen3.json");
}

#[test]
fn qwen3_instruct_2507_template_matches_transformers() {
    check_fixture("qwen3_instruct_2507.json");
}

#[test]
fn enable_thinking_false_inserts_empty_think_block() {
    let path = repo_root().join("model-specs/tokenizers/qwen3/tokenizer_config.json");
    let template = ChatTemplate::from_tokenizer_config(&path).unwrap();
    let messages = [Message::user("hi")];
    let render = |enable_thinking| {
        template
            .render(
                &messages,
                &ChatOptions {
                    add_generation_prompt: true,
                    enable_thinking,
                },
            )
            .unwrap()
    };
    let plain = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(render(None), plain);
    assert_eq!(render(Some(true)), plain);
    assert_eq!(
        render(Some(false)),
        format!("{plain}<think>\n\n</think>\n\n")
    );
}

/// Tools, an assistant turn's tool calls and a tool result, as transformers renders them
/// (expected text from Jinja2 with transformers' settings: `trim_blocks`, `lstrip_blocks`,
/// `tojson` = `json.dumps(ensure_ascii=False)`); object keys keep the order they were
/// written in (`unit` before `city`).
#[test]
fn tools_and_tool_calls_render_as_transformers_does() {
    let path = repo_root().join("model-specs/tokenizers/qwen3/tokenizer_config.json");
    let template = ChatTemplate::from_tokenizer_config(&path).unwrap();
    let tool = TemplateValue::from_json(
        r#"{"type":"function","function":{"name":"get_weather","description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["c","f"]}},"required":["city"]}}}"#,
    )
    .unwrap();
    let call = TemplateValue::from_json(
        r#"{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":{"unit":"c","city":"Paris"}}}"#,
    )
    .unwrap();
    let mut assistant = Message::assistant("");
    assistant.tool_calls = Some(vec![call]);
    let mut result = Message::new("tool", r#"{"temp": 21}"#);
    result.tool_call_id = Some("call_1".into());
    let messages = [
        Message::system("You are terse."),
        Message::user("Weather in Paris?"),
        assistant,
        result,
    ];
    let extras = ChatExtras {
        tools: Some(vec![tool]),
        ..ChatExtras::default()
    };
    let opts = ChatOptions {
        add_generation_prompt: true,
        enable_thinking: None,
    };
    let text = template.render_with(&messages, &opts, &extras).unwrap();
    let expected: &str = "<|im_start|>system\nYou are terse.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather of a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"unit\": \"c\", \"city\": \"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(text, expected);
    // Without tools the system prompt has no tool section.
    let plain = template.render(&messages[..2], &opts).unwrap();
    assert!(!plain.contains("# Tools"), "{plain}");
}

#[test]
fn template_variables_reach_the_template() {
    let template =
        ChatTemplate::from_source("{{ greeting }} {{ n }}|{{ enable_thinking }}".into()).unwrap();
    let mut extras = ChatExtras::default();
    extras
        .variables
        .insert("greeting".into(), TemplateValue::string("hi"));
    extras.variables.insert(
        "n".into(),
        TemplateValue::from_json("[1, {\"b\": 2, \"a\": 1}]").unwrap(),
    );
    extras.variables.insert(
        "enable_thinking".into(),
        TemplateValue::from_json("true").unwrap(),
    );
    let opts = ChatOptions {
        add_generation_prompt: false,
        enable_thinking: Some(false),
    };
    let text = template.render_with(&[], &opts, &extras).unwrap();
    // Python (and so transformers) writes booleans as `True`/`False`.
    assert_eq!(text, "hi [1, {\"b\": 2, \"a\": 1}]|False");
}

#[test]
fn tiny_tokenizer_config_has_the_qwen3_template() {
    let root = repo_root().join("model-specs/tokenizers");
    let qwen3 = ChatTemplate::from_tokenizer_config(&root.join("qwen3/tokenizer_config.json"));
    let tiny = ChatTemplate::from_tokenizer_config(&root.join("qwen3-tiny/tokenizer_config.json"));
    let (qwen3, tiny) = (qwen3.unwrap(), tiny.unwrap());
    assert_eq!(qwen3.source(), tiny.source());
    assert_eq!(qwen3.special_tokens(), tiny.special_tokens());
}

#[test]
fn raise_exception_keeps_the_template_message_and_line() {
    let source = "{%- for m in messages %}\n\
                  {%- if m.role not in ['user', 'assistant'] %}\n\
                  {{- raise_exception('Unknown role: ' + m.role) }}\n\
                  {%- endif %}\n\
                  {{- m.content }}\n\
                  {%- endfor %}";
    let template = ChatTemplate::from_source(source.to_string()).unwrap();
    let ok = template
        .render(&[Message::user("fine")], &ChatOptions::default())
        .unwrap();
    assert_eq!(ok, "fine");
    let err = template
        .render(&[Message::new("robot", "x")], &ChatOptions::default())
        .unwrap_err();
    match &err {
        ChatError::Render { message, line } => {
            assert_eq!(message, "Unknown role: robot");
            assert_eq!(*line, Some(3));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "chat template error at line 3: Unknown role: robot"
    );
}

#[test]
fn syntax_error_names_the_line() {
    let err = ChatTemplate::from_source("ok\n{% if %}\n{% endif %}".to_string()).unwrap_err();
    match err {
        ChatError::Syntax { line, .. } => assert_eq!(line, Some(2)),
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn config_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("tokenizer_config.json");
    let err = ChatTemplate::from_tokenizer_config(&missing).unwrap_err();
    assert!(matches!(err, ChatError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()));

    std::fs::write(&missing, "{\"eos_token\": \"<|im_end|>\"}").unwrap();
    let err = ChatTemplate::from_tokenizer_config(&missing).unwrap_err();
    assert!(matches!(err, ChatError::MissingTemplate { .. }), "{err:?}");

    // A chat_template.jinja next to the config takes priority, as in transformers.
    std::fs::write(dir.path().join("chat_template.jinja"), "{{ eos_token }}!\n").unwrap();
    let template = ChatTemplate::from_tokenizer_config(&missing).unwrap();
    assert_eq!(
        template.render(&[], &ChatOptions::default()).unwrap(),
        "<|im_end|>!"
    );

    std::fs::write(&missing, "[1, 2").unwrap();
    let err = ChatTemplate::from_tokenizer_config(&missing).unwrap_err();
    assert!(matches!(err, ChatError::Config { .. }), "{err:?}");
}
