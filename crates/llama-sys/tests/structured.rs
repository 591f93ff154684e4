//! Structured output on the native backend with the real SmolLM2-135M model: JSON
//! schemas, any JSON object and GBNF grammars through llama.cpp's grammar sampler.
//!
//! The model comes from `OPTILLM_TEST_MODEL` (a GGUF path) or else from the project's
//! model cache, pulled there on first use (`optillm pull smollm2-135m` does the same).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, OnceLock};

use common::model_path;
use optillm_core::{
    Backend, BackendError, ChatRequest, FinishReason, FormatError, ResponseFormat, Sampling,
};
use optillm_llama::{LlamaBackend, LlamaConfig};
use serde_json::{Value, json};

fn backend() -> Arc<LlamaBackend> {
    static BACKEND: OnceLock<Arc<LlamaBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let config = LlamaConfig {
                n_ctx: Some(2048),
                n_threads: Some(2),
                ..LlamaConfig::default()
            };
            Arc::new(LlamaBackend::load(model_path(), config).expect("load model"))
        })
        .clone()
}

fn answer_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": false
    })
}

/// The text parses as an object with exactly one integer field, `answer`.
fn check_answer(text: &str) {
    let v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {text:?}"));
    assert_eq!(obj.len(), 1, "{text:?}");
    assert!(obj["answer"].is_i64(), "answer is not an integer: {text:?}");
}

fn sampling() -> Sampling {
    Sampling::default().with_max_tokens(64)
}

#[tokio::test]
async fn a_json_schema_gives_matching_json() {
    let b = backend();
    let request = ChatRequest::user("What is 2 + 3? Reply in JSON.")
        .with_sampling(sampling().with_temperature(0.0))
        .with_format(ResponseFormat::json_schema(answer_schema()));
    let c = b.complete(request).await.unwrap();
    check_answer(c.text());
    // The grammar ends with the object: only the end-of-text token is admitted then.
    assert_eq!(c.choices[0].finish_reason, FinishReason::EndOfText);
    // Without the schema the same greedy request answers in prose.
    let free = b
        .complete(
            ChatRequest::user("What is 2 + 3? Reply in JSON.")
                .with_sampling(sampling().with_temperature(0.0)),
        )
        .await
        .unwrap();
    assert_ne!(free.text(), c.text());
}

#[tokio::test]
async fn each_of_n_samples_follows_the_schema() {
    let b = backend();
    let s = sampling().with_temperature(1.0).with_seed(3);
    let request = ChatRequest::user("Give me a number between 1 and 100 as JSON.")
        .with_sampling(s.clone())
        .with_format(ResponseFormat::json_schema(answer_schema()))
        .with_n(3);
    // A free request at the same time: the two may decode in one round, each sample
    // with its own sampler (and grammar state, for the constrained ones).
    let free = ChatRequest::user("Name a colour.").with_sampling(s.with_max_tokens(16));
    let (c, f) = tokio::join!(b.complete(request), b.complete(free));
    let c = c.unwrap();
    assert_eq!(c.choices.len(), 3);
    for choice in &c.choices {
        check_answer(&choice.text);
    }
    assert!(!f.unwrap().text().is_empty());
}

#[tokio::test]
async fn json_object_and_a_gbnf_grammar_are_honoured() {
    let b = backend();
    let c = b
        .complete(
            ChatRequest::user("Describe a cat.")
                .with_sampling(sampling().with_temperature(0.7).with_seed(1))
                .with_format(ResponseFormat::JsonObject),
        )
        .await
        .unwrap();
    // Cut by max_tokens the object may be unfinished; finished it must parse.
    if c.choices[0].finish_reason == FinishReason::EndOfText {
        let v: Value = serde_json::from_str(c.text()).unwrap();
        assert!(v.is_object(), "{}", c.text());
    } else {
        assert!(c.text().trim_start().starts_with('{'), "{}", c.text());
    }
    let grammar = ResponseFormat::grammar("root ::= (\"yes\" | \"no\") \".\"");
    for seed in 0..3 {
        let c = b
            .complete(
                ChatRequest::user("Is the sky green?")
                    .with_sampling(sampling().with_temperature(1.0).with_seed(seed))
                    .with_format(grammar.clone())
                    .with_n(2),
            )
            .await
            .unwrap();
        for choice in &c.choices {
            assert!(
                choice.text == "yes." || choice.text == "no.",
                "{:?}",
                choice.text
            );
        }
    }
}

fn format_error(e: BackendError) -> FormatError {
    match e {
        BackendError::InvalidFormat(f) => f,
        other => panic!("expected an invalid format, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_grammars_and_schemas_are_typed_errors_not_crashes() {
    let b = backend();
    let ask = |format: ResponseFormat| {
        ChatRequest::user("Hi")
            .with_sampling(sampling().with_temperature(0.0))
            .with_format(format)
    };
    for grammar in [
        "root ::= \"a\" (",            // syntax error
        "root ::= undefined-rule",     // undefined rule
        "root ::= root \"a\" | \"a\"", // left recursion
        "root ::= \"a\"{5000}",        // repetition beyond llama.cpp's limit
    ] {
        let e = format_error(
            b.complete(ask(ResponseFormat::grammar(grammar)))
                .await
                .unwrap_err(),
        );
        assert!(matches!(e, FormatError::BadGrammar(_)), "{grammar}: {e}");
    }
    // Checked before llama.cpp: no root rule.
    let e = format_error(
        b.complete(ask(ResponseFormat::grammar("start ::= \"a\"")))
            .await
            .unwrap_err(),
    );
    assert!(matches!(e, FormatError::BadGrammar(_)), "{e}");
    // Valid for the edge check, refused by llama.cpp's converter.
    let e = format_error(
        b.complete(ask(ResponseFormat::json_schema(json!({
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/missing"}}
        }))))
        .await
        .unwrap_err(),
    );
    assert!(matches!(e, FormatError::BadSchema { .. }), "{e}");
    // A grammar no token can follow (no token's text starts with a NUL character): an
    // error once decoding reaches it, for each of n samples, not an abort.
    let e = format_error(
        b.complete(ask(ResponseFormat::grammar("root ::= \"\\x00\"")).with_n(2))
            .await
            .unwrap_err(),
    );
    assert!(matches!(e, FormatError::DeadEnd { .. }), "{e}");
    // The backend still answers.
    let c = b
        .complete(ask(ResponseFormat::grammar("root ::= \"ok\"")))
        .await
        .unwrap();
    assert_eq!(c.text(), "ok");
}
