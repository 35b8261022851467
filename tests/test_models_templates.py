"""The training chat templates render byte-identically to the stock ones and mask exactly the assistant turns."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formablate.errors import ConfigError
from formablate.models import SMOLLM2_CHAT_TEMPLATE, SMOLLM2_TRAINING_TEMPLATE, build_tiny_tokenizer, training_chat_template
from formablate.models.templates import has_generation_markers, trl_chat_template

# any text a dataset may hold: newlines, Jinja-looking braces, ChatML-looking markers, non-ASCII
_text = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
        st.sampled_from(["\n", "{{", "}}", "{%", "<|im_end|>", "assistant", " "]),
    ),
    max_size=6,
).map("".join)


@st.composite
def conversations(draw):
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(_text)})
    for _ in range(draw(st.integers(1, 4))):
        messages.append({"role": "user", "content": draw(_text)})
        messages.append({"role": "assistant", "content": draw(_text)})
    if draw(st.booleans()):
        messages = messages[:-1]  # ends on a user turn, as a generation prompt does
    return messages


@pytest.fixture(scope="module")
def tokenizers():
    return {arch: build_tiny_tokenizer(arch) for arch in ("llama", "lfm2")}


def test_tiny_llama_carries_the_smollm2_stock_template(tokenizers):
    assert tokenizers["llama"].chat_template == SMOLLM2_CHAT_TEMPLATE
    assert not has_generation_markers(SMOLLM2_CHAT_TEMPLATE)
    assert has_generation_markers(SMOLLM2_TRAINING_TEMPLATE)
    assert training_chat_template(tokenizers["llama"]) == SMOLLM2_TRAINING_TEMPLATE


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=conversations(), add_generation_prompt=st.booleans())
def test_training_templates_render_byte_identically(tokenizers, messages, add_generation_prompt):
    for arch, tok in tokenizers.items():
        stock = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        train = tok.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            chat_template=training_chat_template(tok),
        )
        assert train == stock, f"arch={arch}: training template renders differently"


@pytest.mark.parametrize("arch", ["llama", "lfm2"])
def test_assistant_mask_is_each_reply_and_its_end_token(tokenizers, arch):
    tok = tokenizers[arch]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome, since 1871."},
    ]
    enc = tok.apply_chat_template(
        messages,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        chat_template=training_chat_template(tok),
    )
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    spans, current = [], []
    for token, bit in zip(ids, mask):
        if bit:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    decoded = [tok.decode(span).strip() for span in spans]
    assert decoded == ["Paris.<|im_end|>", "Rome, since 1871.<|im_end|>"]


def test_template_without_markers_or_variant_is_an_error(tokenizers):
    tok = build_tiny_tokenizer("llama")
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ConfigError, match="generation"):
        training_chat_template(tok)
    tok.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        training_chat_template(tok)


def test_trl_lfm2_template_is_read_from_trl():
    assert "<|im_start|>" in trl_chat_template("lfm2")
    with pytest.raises(ConfigError, match="no chat template"):
        trl_chat_template("no-such-template")
