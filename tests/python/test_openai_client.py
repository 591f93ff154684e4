"""The official `openai` client against a running `optillm serve`."""

import openai
import pytest

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
COUNT = [{"role": "user", "content": "Count from 1 to 100, separated by commas."}]


def test_chat_has_every_field(openai_client, model):
    r = openai_client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=24, temperature=0
    )
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion"
    assert r.created > 1_700_000_000
    assert r.model == model
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_finish_reason_length_when_max_tokens_is_reached(openai_client, model):
    r = openai_client.chat.completions.create(
        model=model, messages=COUNT, max_tokens=6, temperature=0
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 6


def test_chat_streamed_token_by_token(openai_client, model):
    stream = openai_client.chat.completions.create(
        model=model,
        messages=COUNT,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage, ids = [], None, None, set()
    for chunk in stream:
        ids.add(chunk.id)
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    assert len(ids) == 1
    # Real streaming: several deltas, not one blob at the end.
    assert len(pieces) > 3, pieces
    assert "".join(pieces).strip()
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 12


def test_approach_by_model_prefix(openai_client, model):
    plain = openai_client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=16, temperature=0
    )
    re2 = openai_client.chat.completions.create(
        model=f"re2-{model}", messages=QUESTION, max_tokens=16, temperature=0
    )
    assert re2.model == f"re2-{model}"
    assert re2.choices[0].message.content.strip()
    # re2 gives the question twice: the prompt is longer.
    assert re2.usage.prompt_tokens > plain.usage.prompt_tokens


def test_approach_by_body_field_streamed(openai_client, model):
    stream = openai_client.chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=16,
        temperature=0,
        stream=True,
        extra_body={"optillm_approach": "re2"},
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices]
    pieces = [p for p in pieces if p]
    assert "".join(pieces).strip()
    # re2's one call is its final call: streamed token by token.
    assert len(pieces) > 3, pieces


def test_final_stage_of_a_pipeline_streamed(openai_client, model):
    stream = openai_client.chat.completions.create(
        model=f"re2&re2-{model}",
        messages=QUESTION,
        max_tokens=16,
        temperature=0,
        stream=True,
    )
    pieces, finish = [], None
    for chunk in stream:
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    # The first stage runs quietly (keep-alives); the second streams token by token.
    assert len(pieces) > 3, pieces
    # Greedy: the same text and finish reason as the answer in one piece.
    whole = openai_client.chat.completions.create(
        model=f"re2&re2-{model}", messages=QUESTION, max_tokens=16, temperature=0
    )
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason


def test_n_two_choices(openai_client, model):
    r = openai_client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=12, temperature=0.9, seed=3, n=2
    )
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert all(c.message.content is not None for c in r.choices)


def test_models_list_approach_x_model(openai_client, model):
    ids = {m.id for m in openai_client.models.list()}
    assert model in ids
    assert f"moa-{model}" in ids
    assert f"re2-{model}" in ids


def test_unknown_model_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as e:
        openai_client.chat.completions.create(model="no-such-model-xyz", messages=QUESTION)
    assert "no-such-model-xyz" in str(e.value)


def test_bad_approach_is_bad_request(openai_client, model):
    with pytest.raises(openai.BadRequestError) as e:
        openai_client.chat.completions.create(
            model=model, messages=QUESTION, extra_body={"optillm_approach": "bon&&moa"}
        )
    assert "approach" in str(e.value)


# (After "Answer:" SmolLM2-135M-Instruct ends the text at once: no prompt of that shape.)
RAW = "The capital of France is"


def test_text_completion_continues_the_prompt_without_the_chat_template(openai_client, model):
    r = openai_client.completions.create(
        model=model, prompt=RAW, max_tokens=5, temperature=0, logprobs=2
    )
    assert r.id.startswith("cmpl-")
    assert r.object == "text_completion"
    choice = r.choices[0]
    assert choice.text
    assert choice.finish_reason in ("stop", "length")
    assert "".join(choice.logprobs.tokens) == choice.text
    assert len(choice.logprobs.token_logprobs) == len(choice.logprobs.tokens)
    assert all(len(top) <= 2 for top in choice.logprobs.top_logprobs)
    # The prompt is the text alone: the same question as a chat message costs the
    # template's tokens on top.
    chat = openai_client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": RAW}], max_tokens=1, temperature=0
    )
    assert r.usage.prompt_tokens + 5 < chat.usage.prompt_tokens


def test_text_completion_streamed(openai_client, model):
    stream = openai_client.completions.create(
        model=model, prompt="1, 2, 3, 4,", max_tokens=6, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].text for c in chunks)
    assert text.strip()


def test_text_completion_with_an_approach_is_bad_request(openai_client, model):
    with pytest.raises(openai.BadRequestError) as e:
        openai_client.completions.create(model=f"moa-{model}", prompt=RAW, max_tokens=4)
    assert "none" in str(e.value)


def test_a_final_assistant_message_is_continued(openai_client, model):
    begun = "The capital of France is"
    question = {"role": "user", "content": "What is the capital of France?"}
    continued = openai_client.chat.completions.create(
        model=model,
        messages=[question, {"role": "assistant", "content": begun}],
        max_tokens=4,
        temperature=0,
    )
    fresh = openai_client.chat.completions.create(
        model=model, messages=[question], max_tokens=4, temperature=0
    )
    # The reply goes on from the begun words (no new turn that restates them)...
    assert continued.choices[0].message.content.strip().startswith("Paris")
    # ... whose tokens are part of the prompt, with no end of turn after them.
    assert continued.usage.prompt_tokens > fresh.usage.prompt_tokens + 3
