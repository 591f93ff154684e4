"""The official `ollama` client against a running `optillm serve`."""

import ollama
import pytest

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
COUNT = [{"role": "user", "content": "Count from 1 to 100, separated by commas."}]


def test_chat(ollama_client, model):
    r = ollama_client.chat(
        model=model, messages=QUESTION, options={"temperature": 0, "num_predict": 24}
    )
    assert r.model == model
    assert r.done is True
    assert r.done_reason in ("stop", "length")
    assert r.message.role == "assistant"
    assert r.message.content.strip()
    assert r.prompt_eval_count > 0
    assert r.eval_count > 0


def test_chat_streamed(ollama_client, model):
    parts = list(
        ollama_client.chat(
            model=model,
            messages=COUNT,
            stream=True,
            options={"temperature": 0, "num_predict": 10},
        )
    )
    assert len(parts) > 3
    assert all(not p.done for p in parts[:-1])
    last = parts[-1]
    assert last.done is True
    assert last.done_reason == "length"
    assert last.eval_count == 10
    assert "".join(p.message.content for p in parts).strip()


def test_generate_with_approach_prefix(ollama_client, model):
    r = ollama_client.generate(
        model=f"re2-{model}",
        prompt="What is 2 + 2?",
        options={"temperature": 0, "num_predict": 16},
    )
    assert r.done is True
    assert r.response.strip()


def test_list_and_show(ollama_client, model):
    names = {m.model for m in ollama_client.list().models}
    assert model in names
    assert f"moa-{model}" in names
    shown = ollama_client.show(model)
    assert shown.details is not None


def test_unknown_model_is_404(ollama_client):
    with pytest.raises(ollama.ResponseError) as e:
        ollama_client.chat(model="no-such-model-xyz", messages=QUESTION)
    assert e.value.status_code == 404
    assert "no-such-model-xyz" in e.value.error


def test_generate_raw_skips_the_chat_template(ollama_client, model):
    prompt = "The capital of France is"
    options = {"temperature": 0, "num_predict": 4}
    raw = ollama_client.generate(model=model, prompt=prompt, raw=True, options=options)
    templated = ollama_client.generate(model=model, prompt=prompt, options=options)
    assert raw.done is True
    assert raw.response
    assert raw.prompt_eval_count + 5 < templated.prompt_eval_count


def test_a_final_assistant_message_is_continued(ollama_client, model):
    messages = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is"},
    ]
    r = ollama_client.chat(
        model=model, messages=messages, options={"temperature": 0, "num_predict": 4}
    )
    assert r.message.content.strip().startswith("Paris")
