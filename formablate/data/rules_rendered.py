"""Validator rules on one rendered file, ``<dataset-dir>/<format>.jsonl``.

Token length is proven without loading a tokenizer where possible: byte-level
BPE tokenizers (SmolLM2, LFM2) never produce more tokens than the UTF-8 bytes of
the text they encode, and each special token of a ChatML-like template is one
token, so ``bytes(contents) + TEMPLATE_TOKENS_PER_MESSAGE * messages +
TEMPLATE_TOKENS_FIXED`` bounds a record's token count (the fixed part covers BOS,
EOS and a default system prompt such as SmolLM2's 69-byte one). Only a record
whose bound exceeds ``max_length`` is counted with the real tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from formablate.data.context import DatasetContext, RuleResult
from formablate.data.render import FORMAT_SHAPE, AlpacaRecord, ChatRecord, expected_ids, records_text, render_records
from formablate.data.schema import CanonicalExample
from formablate.data.textnorm import contains_content
from formablate.errors import HarnessError, MissingFileError, ModelSourceError
from formablate.io import format_validation_error

__all__ = [
    "TEMPLATE_TOKENS_PER_MESSAGE",
    "TEMPLATE_TOKENS_FIXED",
    "record_shape_problem",
    "content_problems",
    "turn_texts",
    "token_bound",
    "hf_token_counter",
    "load_token_counter",
    "record_schema",
    "empty_turn",
    "ids",
    "content_equivalence",
    "fresh_render",
    "token_length",
    "format_identity",
    "FORMAT_IDENTITY_MAX_SHARE",
    "FORMAT_IDENTITY_WARN_SHARE",
]

TEMPLATE_TOKENS_PER_MESSAGE = 16  # ChatML: <|im_start|> + role + '\n' + <|im_end|> + '\n' is 8 at most
TEMPLATE_TOKENS_FIXED = 128  # BOS/EOS and a default system prompt (SmolLM2's wrapper + text is 20 tokens)
_FAILURE_CAP = 20  # per file: a stale file would otherwise print every line


def record_shape_problem(obj: dict, fmt: str) -> str | None:
    """Why ``obj`` is not a well-formed record of ``fmt`` (fields, types, role order), or None."""
    model = AlpacaRecord if fmt == "alpaca_flat" else ChatRecord
    try:
        rec = model.model_validate(obj)
    except ValidationError as exc:
        return format_validation_error(exc)
    if isinstance(rec, ChatRecord):
        roles = [m.role for m in rec.messages]
        want = ["user", "assistant"] * (len(roles) // 2)
        if roles != want or len(roles) % 2:
            return f"found roles {roles}, expected user/assistant alternating, ending with assistant"
        if FORMAT_SHAPE[fmt] == "single" and len(roles) != 2:
            return f"found {len(roles)} messages, expected 2 in the single-turn format {fmt!r}"
    return None


def record_schema(ds: DatasetContext, fmt: str) -> RuleResult:
    """Every record has exactly the fields of its format with the right types and role order."""
    res = RuleResult()
    for line, obj in ds.records(fmt):
        problem = record_shape_problem(obj, fmt)
        if problem:
            res.fail(ds.format_path(fmt), line, "record_schema", problem)
    return res


def turn_texts(obj: dict) -> list[tuple[str, str]]:
    """``(role or field, text)`` of every trainable text of a record (alpaca's ``input`` may be empty, so it is left out)."""
    if isinstance(obj.get("messages"), list):
        return [(str(m.get("role", "?")), m.get("content") if isinstance(m.get("content"), str) else "")
                for m in obj["messages"] if isinstance(m, dict)]
    return [(key, obj[key]) for key in ("instruction", "output", "prompt", "completion") if isinstance(obj.get(key), str)]


def empty_turn(ds: DatasetContext, fmt: str) -> RuleResult:
    """No message, instruction, output, prompt or completion is empty or whitespace-only."""
    res = RuleResult()
    for line, obj in ds.records(fmt):
        for i, (who, text) in enumerate(turn_texts(obj)):
            if not text.strip():
                res.fail(ds.format_path(fmt), line, "empty_turn",
                         f"record {obj.get('id')!r}: found an empty {who} turn (#{i}), expected text")
    return res


def ids(ds: DatasetContext, fmt: str) -> RuleResult:
    """Record ids are unique and exactly the ids derived from the canonical examples (stable across formats)."""
    res = RuleResult()
    path = ds.format_path(fmt)
    expected: dict[str, str] = {rid: ex.id for ex in ds.examples for rid in expected_ids(ex, fmt)}
    seen: dict[str, int] = {}
    for line, obj in ds.records(fmt):
        rid, sid = obj.get("id"), obj.get("source_id")
        if not isinstance(rid, str):
            res.fail(path, line, "ids", f"found id={rid!r}, expected a string id")
            continue
        if rid in seen:
            res.fail(path, line, "ids", f"found id={rid!r} again (first on line {seen[rid]}), expected unique ids")
            continue
        seen[rid] = line
        if rid not in expected:
            res.fail(path, line, "ids", f"found id={rid!r}, expected an id derived from a canonical example")
        elif sid != expected[rid]:
            res.fail(path, line, "ids", f"found source_id={sid!r} for id={rid!r}, expected {expected[rid]!r}")
    missing = [rid for rid in expected if rid not in seen]
    if missing:
        res.fail(path, None, "ids", f"found {len(missing)} canonical record ids missing (e.g. {missing[:5]}), "
                 "expected every exchange of every example")
    return res


def _record_sides(obj: dict) -> tuple[str, str]:
    """(user side, assistant side) text of a single-turn record."""
    if "messages" in obj:
        msgs = obj["messages"]
        return msgs[0]["content"], msgs[1]["content"]
    return f"{obj['instruction']}\n\n{obj['input']}", obj["output"]


def content_problems(ex: CanonicalExample, fmt: str, by_id: dict[str, dict]) -> list[tuple[str, str]]:
    """``(record id, problem)`` for every canonical user turn, context, answer (and, for the verbose format,
    explanation) of ``ex`` that its rendering in ``fmt`` lacks; ``by_id`` maps record ids to records."""
    problems: list[tuple[str, str]] = []
    multi = FORMAT_SHAPE[fmt] == "multi"
    for k, xc in enumerate(ex.exchanges):
        rid = ex.id if multi else expected_ids(ex, fmt)[k]
        obj = by_id.get(rid)
        if obj is None:
            problems.append((rid, f"found no record {rid!r}, expected exchange {k} of {ex.id}"))
            continue
        try:
            if multi:
                user, assistant = obj["messages"][2 * k]["content"], obj["messages"][2 * k + 1]["content"]
            else:
                user, assistant = _record_sides(obj)
        except (KeyError, IndexError, TypeError):
            problems.append((rid, f"found no turn {k}, expected one for exchange {k} of {ex.id}"))
            continue
        needed = [(assistant, xc.answer, f"the answer of exchange {k}"), (user, xc.user, f"the user turn of exchange {k}")]
        if ex.context and (k == 0 or not multi):
            needed.append((user, ex.context, "the context"))
        if not multi:  # a follow-up record restates every earlier exchange
            needed += [(user, prior.user, f"earlier user turn {j}") for j, prior in enumerate(ex.exchanges[:k])]
            needed += [(user, prior.answer, f"earlier answer {j}") for j, prior in enumerate(ex.exchanges[:k])]
        if fmt == "multi_turn_verbose":
            needed.append((assistant, xc.explanation, f"the explanation of exchange {k}"))
        for container, piece, what in needed:
            if not isinstance(container, str) or not contains_content(container, piece):
                problems.append((rid, f"found {what} missing, expected {piece[:60]!r} in the rendering"))
    return problems


def content_equivalence(ds: DatasetContext, fmt: str) -> RuleResult:
    """Every canonical user turn, context and answer is present in its rendering (up to whitespace/JSON layout)."""
    res = RuleResult()
    path = ds.format_path(fmt)
    lines = {obj["id"]: line for line, obj in ds.records(fmt) if isinstance(obj.get("id"), str)}
    by_id = {obj["id"]: obj for _, obj in ds.records(fmt) if isinstance(obj.get("id"), str)}
    for ex in ds.examples:
        for rid, problem in content_problems(ex, fmt, by_id):
            res.fail(path, lines.get(rid), "content_equivalence", f"record {rid!r}: {problem}")
    return res


def fresh_render(ds: DatasetContext, fmt: str) -> RuleResult:
    """The rendered file equals a fresh render of the canonical file, byte for byte."""
    res = RuleResult()
    path = ds.format_path(fmt)
    if not path.is_file():
        raise MissingFileError(f"{path}: rendered file for format={fmt!r} not found; run formablate render")
    if ds.canonical.failures:
        res.fail(ds.canonical_path, None, "fresh_render",
                 f"found {len(ds.canonical.failures)} invalid canonical lines, expected none (fix rule schema first)")
        return res
    fresh = records_text(render_records(ds.examples, fmt, ds.filler_seed)).splitlines()
    found = path.read_text(encoding="utf-8").splitlines()
    diffs = [i for i in range(max(len(fresh), len(found))) if i >= len(fresh) or i >= len(found) or fresh[i] != found[i]]
    for i in diffs[:_FAILURE_CAP]:
        if i >= len(found):
            msg = f"found end of file, expected record {json.loads(fresh[i]).get('id')!r}"
        elif i >= len(fresh):
            msg = "found an extra line, expected end of file"
        else:
            msg = f"found a line differing from a fresh render ({_first_diff(found[i], fresh[i])})"
        res.fail(path, min(i, len(found)) + 1, "fresh_render", msg + "; run formablate render")
    if len(diffs) > _FAILURE_CAP:
        res.fail(path, None, "fresh_render", f"found {len(diffs)} differing lines in all (first {_FAILURE_CAP} shown)")
    return res


def _first_diff(found: str, fresh: str) -> str:
    try:
        a, b = json.loads(found), json.loads(fresh)
    except ValueError:
        return "not JSON"
    for key in list(b) + [k for k in a if k not in b]:
        if a.get(key) != b.get(key):
            return f"id={b.get('id')!r} key {key!r}: found {str(a.get(key))[:60]!r}, expected {str(b.get(key))[:60]!r}"
    return f"id={b.get('id')!r}: same content, different serialisation"


def token_bound(record: dict) -> int:
    """An upper bound on a record's token count for a byte-level BPE tokenizer with a ChatML-like template."""
    if isinstance(record.get("messages"), list):
        texts = [str(m.get("content", "")) for m in record["messages"] if isinstance(m, dict)]
    else:
        texts = [str(record.get("prompt", "")), str(record.get("completion", ""))]
    return sum(len(t.encode("utf-8")) for t in texts) + TEMPLATE_TOKENS_PER_MESSAGE * len(texts) + TEMPLATE_TOKENS_FIXED


def hf_token_counter(tokenizer: Any) -> Callable[[dict], int]:
    """Count a record's training tokens with a Hugging Face tokenizer, as SFTTrainer would build them."""

    def ids(x: Any) -> list:
        if hasattr(x, "keys") and "input_ids" in x:
            x = x["input_ids"]
        return list(x)

    def count(record: dict) -> int:
        if "messages" in record:
            return len(ids(tokenizer.apply_chat_template(record["messages"], tokenize=True)))
        prompt = ids(tokenizer(record["prompt"])["input_ids"])
        completion = ids(tokenizer(record["completion"], add_special_tokens=False)["input_ids"])
        return len(prompt) + len(completion) + 1  # SFTTrainer appends EOS to the completion

    return count


@lru_cache(maxsize=8)
def load_token_counter(source: str) -> Callable[[dict], int]:
    """A token counter for the tokenizer of model ``source``; never loads weights (memoised per source).

    A packaged GGUF model's tokenizer comes from its converted copy when the default cache
    holds one (``tokenizer.json``, a fraction of a second), else straight from the GGUF's
    metadata (about 3 s); never through :func:`formablate.models.load_tokenizer`, which would
    de-quantize and convert the whole model first. Both give the same tokenizer: the copy is
    that tokenizer saved.
    """
    try:
        from formablate.models import load_tokenizer, locate_packaged, parse_source
        from formablate.models.packaged import default_cache, find_converted
    except ImportError as exc:
        raise ModelSourceError(f"tokenizer={source!r}: formablate.models.load_tokenizer is not available ({exc})") from None
    spec = parse_source(source)
    if spec.scheme == "packaged":
        from transformers import AutoTokenizer

        gguf = locate_packaged(spec.name)
        try:
            converted = find_converted(gguf, default_cache())
            if converted is not None:
                return hf_token_counter(AutoTokenizer.from_pretrained(str(converted)))
            return hf_token_counter(AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name))
        except (OSError, ValueError) as exc:
            raise ModelSourceError(f"tokenizer={source!r}: cannot read the tokenizer from {gguf}: {exc}") from None
    return hf_token_counter(load_tokenizer(source))


def token_length(ds: DatasetContext, fmt: str) -> RuleResult:
    """Every record fits max_length tokens: proven by the byte bound, else counted with the configured tokenizer."""
    res = RuleResult()
    path = ds.format_path(fmt)
    records = ds.records(fmt)
    over = [(line, obj, token_bound(obj)) for line, obj in records if token_bound(obj) > ds.max_length]
    why_no_counter = "no tokenizer configured (pass --tokenizer SOURCE)"
    if over and ds.token_counter is None and ds.tokenizer_source:
        try:
            ds.token_counter = load_token_counter(ds.tokenizer_source)
        except HarnessError as exc:
            why_no_counter = str(exc)
    counted = 0
    for line, obj, bound in over:
        if ds.token_counter is None:
            res.fail(path, line, "token_length",
                     f"record {obj.get('id')!r}: found a byte bound of {bound} tokens > max_length={ds.max_length} "
                     f"and {why_no_counter}, expected a proof of <= {ds.max_length} tokens")
            continue
        n = ds.token_counter(obj)
        counted += 1
        if n > ds.max_length:
            res.fail(path, line, "token_length",
                     f"record {obj.get('id')!r}: found {n} tokens, expected <= max_length={ds.max_length}")
    largest = max((token_bound(o) for _, o in records), default=0)
    res.notes.append(f"{path.name}: {len(records) - len(over)}/{len(records)} records proven by the byte bound "
                     f"(largest bound {largest}), {counted} counted with the tokenizer, max_length={ds.max_length}")
    return res


# --------------------------------------------------------------------------- formats that differ

# A pair of formats rendered from one content that coincide on more than FORMAT_IDENTITY_MAX_SHARE of their
# records fails: an arm-vs-arm comparison of the two then trains on the same data in over two thirds of the
# records, so its treatment is diluted at least threefold and an effect must be three times larger to show.
# Above FORMAT_IDENTITY_WARN_SHARE (a quarter) the validator warns in its notes. The structured_terse renderer
# sits at 84/300 (28 %, a warning) on the pilot: those records are single-sentence, single-line answers in
# which no whitespace can go without dropping content (it was 179/300 = 60 % before sentence-per-line layout
# and one-space Python indentation). The 9-record test fixture has 5 such answers (56 %).
FORMAT_IDENTITY_MAX_SHARE = 2 / 3
FORMAT_IDENTITY_WARN_SHARE = 0.25


def _trainable(obj: dict) -> tuple[tuple[str, str], ...]:
    return tuple(turn_texts(obj))


def format_identity(ds: DatasetContext) -> RuleResult:
    """No two rendered formats coincide on over two thirds of their records (each pair's identical count is reported)."""
    res = RuleResult()
    present = [f for f in ds.manifest.formats if ds.format_path(f).is_file()]
    texts = {f: {obj.get("id"): _trainable(obj) for _, obj in ds.records(f)} for f in present}
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            shared = [rid for rid in texts[a] if rid in texts[b]]
            if not shared:
                continue
            same = [rid for rid in shared if texts[a][rid] == texts[b][rid]]
            share = len(same) / len(shared)
            warn = " (WARNING: over a quarter identical)" if share > FORMAT_IDENTITY_WARN_SHARE else ""
            res.notes.append(f"format_identity: {a} vs {b}: {len(same)}/{len(shared)} records identical{warn}")
            if share > FORMAT_IDENTITY_MAX_SHARE:
                res.fail(ds.format_path(b), None, "format_identity",
                         f"found {len(same)}/{len(shared)} records identical to {a} (e.g. {same[0]!r}), expected "
                         f"at most {FORMAT_IDENTITY_MAX_SHARE:.0%}: the two formats barely differ")
    return res
