"""The six training formats, rendered from canonical content by pure functions.

Content is held constant: every format carries every exchange of every
example, and every canonical ``answer`` appears in every rendering (up to
whitespace and JSON layout; see :func:`formablate.data.textnorm.contains_content`).
The primary user turn is ``user + "\\n\\n" + context`` when the example has a
context.

========================  =======  ============================================================
format                    shape    assistant turn
========================  =======  ============================================================
``alpaca_flat``           single   the answer (instruction/input/output + Alpaca prompt/completion)
``single_turn_chat``      single   the answer (one user->assistant pair per record)
``multi_turn_concise``    multi    the answer
``multi_turn_verbose``    multi    the answer, a blank line, then the explanation
``structured_terse``      multi    the answer compacted (:func:`compact_answer`)
``bad_format_control``    multi    the answer wrapped in filler (:mod:`formablate.data.filler`)
========================  =======  ============================================================

*Single-turn* formats emit one record per exchange. A follow-up record restates
what came before: the context, then ``"Earlier in this conversation:"`` with
every earlier ``User:``/``Assistant:`` pair (concise answers). In
``alpaca_flat`` that block is the ``input``; in ``single_turn_chat`` it follows
the follow-up question, mirroring how the primary turn places its context.

``structured_terse`` is *multi-turn* on purpose: it then differs from
``multi_turn_concise`` in one thing only, the compaction of the assistant
turns, and from ``multi_turn_verbose`` (the verbose chat H6 compares it with)
in verbosity and layout but not in turn structure. A single-turn terse format
would confound compaction with the single/multi-turn contrast H1 measures.
Only assistant turns are compacted: user turns and contexts are the same
inputs in every format.

Every record carries ``id`` (``"<example id>"`` for the whole conversation or
its primary exchange, ``"<example id>#<turn>"`` for a follow-up record) and
``source_id`` (the example id), plus the fields TRL's ``SFTTrainer`` takes:
``messages`` for chat formats, ``prompt``/``completion`` for ``alpaca_flat``
(which also keeps ``instruction``/``input``/``output``).
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import sys
import tokenize
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from formablate import __version__
from formablate.data.filler import DEFAULT_FILLER_SEED, FILLER_VERSION, pad_with_filler
from formablate.data.context import RENDER_META_NAME, load_canonical, load_manifest, manifest_path_for
from formablate.data.schema import FORMATS, CanonicalExample
from formablate.data.textnorm import minify_json, split_fences
from formablate.errors import DataError, MissingFileError
from formablate.io import atomic_write_bytes, atomic_write_text, sha256_file

__all__ = [
    "FORMAT_SHAPE",
    "CHAT_FORMATS",
    "FLAT_FORMATS",
    "ALPACA_TEMPLATE",
    "ALPACA_TEMPLATE_NO_INPUT",
    "EARLIER_HEADER",
    "ChatMessage",
    "ChatRecord",
    "AlpacaRecord",
    "RENDERERS",
    "primary_user_turn",
    "restated_context",
    "compact_answer",
    "render_example",
    "render_records",
    "render_all",
    "record_id",
    "expected_ids",
    "records_text",
    "render_meta",
    "write_rendered",
    "blend_bytes",
    "add_parser",
    "run",
]

FORMAT_SHAPE: dict[str, Literal["single", "multi"]] = {
    "alpaca_flat": "single",
    "single_turn_chat": "single",
    "multi_turn_concise": "multi",
    "multi_turn_verbose": "multi",
    "structured_terse": "multi",
    "bad_format_control": "multi",
}
FLAT_FORMATS: tuple[str, ...] = ("alpaca_flat",)
CHAT_FORMATS: tuple[str, ...] = tuple(f for f in FORMATS if f not in FLAT_FORMATS)

# The standard Stanford Alpaca prompt templates.
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_TEMPLATE_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
EARLIER_HEADER = "Earlier in this conversation:"


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ChatMessage(_Rec):
    """One message of a rendered chat record (blank content is checked by its own rule, not here)."""

    role: Literal["user", "assistant"] = Field(description="Who speaks; records alternate user/assistant.")
    content: str = Field(description="The message text.")


class ChatRecord(_Rec):
    """A rendered record of a chat format, in the conversational shape SFTTrainer takes."""

    id: str = Field(description="'<example id>' or '<example id>#<turn>'.")
    source_id: str = Field(description="The canonical example's id.")
    messages: list[ChatMessage] = Field(min_length=2, description="user, assistant, user, assistant, ...")


class AlpacaRecord(_Rec):
    """A rendered alpaca_flat record: the Alpaca fields plus SFTTrainer's prompt/completion."""

    id: str = Field(description="'<example id>' or '<example id>#<turn>'.")
    source_id: str = Field(description="The canonical example's id.")
    instruction: str = Field(description="The user's request.")
    input: str = Field(description="Context and earlier exchanges; '' when there are none.")
    output: str = Field(description="The concise answer.")
    prompt: str = Field(description="The Alpaca template filled with instruction and input.")
    completion: str = Field(description="The output (SFTTrainer trains on it only).")


# --------------------------------------------------------------------------- building blocks


def primary_user_turn(ex: CanonicalExample) -> str:
    """The first user message: the user's text, then the context after a blank line."""
    first = ex.exchanges[0].user
    return f"{first}\n\n{ex.context}" if ex.context else first


def restated_context(ex: CanonicalExample, turn: int) -> str:
    """What a single-turn record of follow-up ``turn`` restates: the context and every earlier exchange."""
    if turn < 1:
        raise ValueError(f"turn={turn!r}: only follow-ups (turn >= 1) restate earlier exchanges")
    lines = [EARLIER_HEADER]
    for prior in ex.exchanges[:turn]:
        lines.append(f"User: {prior.user}")
        lines.append(f"Assistant: {prior.answer}")
    block = "\n".join(lines)
    return f"{ex.context}\n\n{block}" if ex.context else block


def record_id(example_id: str, turn: int) -> str:
    """The id of the record holding exchange ``turn`` in a single-turn format (turn 0 keeps the example id)."""
    return example_id if turn == 0 else f"{example_id}#{turn}"


def expected_ids(ex: CanonicalExample, fmt: str) -> list[str]:
    """The ids a correct rendering of ``ex`` in ``fmt`` has, in order."""
    if FORMAT_SHAPE[fmt] == "multi":
        return [ex.id]
    return [record_id(ex.id, k) for k in range(len(ex.exchanges))]


# --------------------------------------------------------------------------- structured_terse compaction


def _python_string_rows(code: str) -> set[int] | None:
    """1-based rows whose whitespace belongs to a multi-line string literal (None if ``code`` does not tokenize)."""
    rows: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.start[0] != tok.end[0] and tok.type not in (tokenize.NEWLINE, tokenize.NL):
                rows.update(range(tok.start[0], tok.end[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return rows


def _string_continuation_rows(code: str) -> set[int] | None:
    """1-based rows whose *leading* whitespace belongs to a multi-line string literal (None if no tokenize)."""
    rows: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.start[0] != tok.end[0] and tok.type not in (tokenize.NEWLINE, tokenize.NL):
                rows.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return rows


def _reindent_python(code: str) -> str:
    """Python indentation cut to one space per level: the program's AST is unchanged (checked), so is its meaning.

    The indentation unit is the smallest indent of a statement line; a line indented by a multiple of it
    (statement or bracket continuation) is divided by it, anything else and every row inside a multi-line
    string keeps its whitespace. Code that does not parse, uses tabs, or whose AST would change is returned
    as it was.
    """
    if "\t" in code:
        return code
    try:
        before = ast.dump(ast.parse(code))
    except (SyntaxError, ValueError):
        return code
    protected = _string_continuation_rows(code)
    if protected is None:
        return code
    lines = code.split("\n")
    indents = [len(ln) - len(ln.lstrip(" ")) for ln in lines]
    unit = min((n for row, n in enumerate(indents, 1) if n and row not in protected and lines[row - 1].strip()),
               default=0)
    if unit <= 1:
        return code
    out = []
    for row, (line, n) in enumerate(zip(lines, indents), start=1):
        if row in protected or n % unit:
            out.append(line)
        else:
            out.append(" " * (n // unit) + line[n:])
    new = "\n".join(out)
    try:
        return new if ast.dump(ast.parse(new)) == before else code
    except (SyntaxError, ValueError):
        return code


def _compact_code(body: str, lang: str) -> str:
    """Drop blank lines and trailing whitespace, except inside Python multi-line strings (their value);
    Python (or unlabelled code that parses as Python) is also re-indented one space per level."""
    python = lang in ("", "python", "py", "python3")
    protected = _python_string_rows(body) if python else None
    out = []
    for row, line in enumerate(body.split("\n"), start=1):
        if protected is not None and row in protected:
            out.append(line)
        elif line.strip():
            out.append(line.rstrip())
    code = "\n".join(out)
    return _reindent_python(code) if python else code


# a sentence end: . ! or ? (optionally closed by a quote or bracket), one space, then a capital, digit, sign or
# backtick; "e.g. the" or "3.5" do not match. Only whitespace changes at a match, so a wrong split costs layout only
_SENTENCE_END = re.compile(r"(?<=[.!?])([\"')\]]?) (?=[A-Z0-9`$£€(\"'-])")


def _one_sentence_per_line(line: str) -> str:
    """A prose line of several sentences laid out one sentence per line (same indentation), the terse
    format's structure: the answer's statements as lines, as its code is laid out as statements."""
    body = line.lstrip()
    if body.startswith(("|", "#")):  # tables and headings keep their line
        return line
    indent = line[: len(line) - len(body)]
    return _SENTENCE_END.sub(lambda m: m.group(1) + "\n" + indent, line)


def _compact_prose(text: str) -> str:
    """Keep line structure (bullets, numbered steps) but drop blank lines and repeated spaces, and put
    each sentence of a line on its own line.

    A whitespace run at either end becomes one newline (or one space when it had no
    line break), so text that touched a code fence still touches it, and text that
    was separated from it still is.
    """
    core = text.strip()
    if not core:
        return ("\n" if any(c in text for c in "\n\r") else " ") if text else ""
    lines = []
    for line in core.splitlines():
        if not line.strip():
            continue
        body = line.lstrip()
        lines.append(_one_sentence_per_line(line[: len(line) - len(body)] + re.sub(r"\s+", " ", body.rstrip())))
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]

    def edge(ws: str) -> str:
        return "" if not ws else ("\n" if len(ws.splitlines()) > 1 or ws.endswith(("\n", "\r")) else " ")

    return edge(lead) + "\n".join(lines) + edge(trail)


def _is_python(text: str) -> bool:
    """An unfenced multi-line answer that parses as Python is treated as code, so its indentation survives."""
    if "\n" not in text.strip():
        return False
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


def compact_answer(text: str) -> str:
    """The structured_terse form of an answer. Only whitespace changes:

    * a JSON object/array answer is minified (no whitespace between tokens);
    * fenced code: blank lines and trailing whitespace removed (Python multi-line
      strings untouched); Python re-indented to one space per level (AST-checked);
      a fenced JSON body is minified;
    * prose: blank lines dropped, runs of whitespace inside a line collapsed, line
      breaks kept (bullets and steps stay readable), one sentence per line;
    * an unfenced multi-line answer that parses as Python is compacted as code.
    """
    whole = minify_json(text)
    if whole is not None:
        return whole
    if "```" not in text and _is_python(text):
        return _compact_code(text.strip("\n"), "python")
    parts: list[str] = []
    for kind, lang, body in split_fences(text):
        if kind == "prose":
            parts.append(_compact_prose(body))
        else:
            mini = minify_json(body)
            code = mini if mini is not None else _compact_code(body, (lang or "").lower())
            parts.append(f"```{lang or ''}\n{code}\n```")
    return "".join(parts).strip()


# --------------------------------------------------------------------------- renderers


def _chat(turns: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    for user, assistant in turns:
        msgs.append({"role": "user", "content": user})
        msgs.append({"role": "assistant", "content": assistant})
    return msgs


def _single_turn_user(ex: CanonicalExample, turn: int) -> str:
    if turn == 0:
        return primary_user_turn(ex)
    return f"{ex.exchanges[turn].user}\n\n{restated_context(ex, turn)}"


def render_alpaca_flat(ex: CanonicalExample, seed: int = DEFAULT_FILLER_SEED) -> list[dict[str, Any]]:
    """One Alpaca record per exchange; follow-ups carry the context and earlier exchanges in ``input``."""
    records = []
    for k, exchange in enumerate(ex.exchanges):
        instruction = exchange.user
        inp = (ex.context or "") if k == 0 else restated_context(ex, k)
        template = ALPACA_TEMPLATE if inp else ALPACA_TEMPLATE_NO_INPUT
        records.append(
            {
                "id": record_id(ex.id, k),
                "source_id": ex.id,
                "instruction": instruction,
                "input": inp,
                "output": exchange.answer,
                "prompt": template.format(instruction=instruction, input=inp),
                "completion": exchange.answer,
            }
        )
    return records


def render_single_turn_chat(ex: CanonicalExample, seed: int = DEFAULT_FILLER_SEED) -> list[dict[str, Any]]:
    """One user->assistant record per exchange; follow-ups restate the earlier exchanges."""
    return [
        {"id": record_id(ex.id, k), "source_id": ex.id, "messages": _chat([(_single_turn_user(ex, k), xc.answer)])}
        for k, xc in enumerate(ex.exchanges)
    ]


def _multi(ex: CanonicalExample, assistant: Callable[[int], str]) -> list[dict[str, Any]]:
    users = [primary_user_turn(ex)] + [xc.user for xc in ex.exchanges[1:]]
    turns = [(u, assistant(k)) for k, u in enumerate(users)]
    return [{"id": ex.id, "source_id": ex.id, "messages": _chat(turns)}]


def render_multi_turn_concise(ex: CanonicalExample, seed: int = DEFAULT_FILLER_SEED) -> list[dict[str, Any]]:
    """The whole conversation, concise answers."""
    return _multi(ex, lambda k: ex.exchanges[k].answer)


def render_multi_turn_verbose(ex: CanonicalExample, seed: int = DEFAULT_FILLER_SEED) -> list[dict[str, Any]]:
    """The whole conversation; each assistant turn is the answer, a blank line, then the explanation."""
    return _multi(ex, lambda k: f"{ex.exchanges[k].answer}\n\n{ex.exchanges[k].explanation}")


def render_structured_terse(ex: CanonicalExample, seed: int = DEFAULT_FILLER_SEED) -> list[dict[str, Any]]:
    """The whole conversation; each assistant turn is the compacted answer."""
    return _multi(ex, lambda k: compact_answer(ex.exchanges[k].answer))


def render_bad_format_control(ex: CanonicalExample, seed: int = DEFAULT_FILLER_SEED) -> list[dict[str, Any]]:
    """The whole conversation; each answer wrapped in filler drawn with ``Random(f"{seed}:{id}:{turn}")``."""
    return _multi(ex, lambda k: pad_with_filler(ex.exchanges[k].answer, ex.id, k, seed))


RENDERERS: dict[str, Callable[[CanonicalExample, int], list[dict[str, Any]]]] = {
    "alpaca_flat": render_alpaca_flat,
    "single_turn_chat": render_single_turn_chat,
    "multi_turn_concise": render_multi_turn_concise,
    "multi_turn_verbose": render_multi_turn_verbose,
    "structured_terse": render_structured_terse,
    "bad_format_control": render_bad_format_control,
}
assert tuple(RENDERERS) == FORMATS, f"RENDERERS={tuple(RENDERERS)!r} must list every format in FORMATS={FORMATS!r}"


def _check_format(fmt: str) -> None:
    if fmt not in RENDERERS:
        raise ValueError(f"format={fmt!r} is unknown; expected one of {list(RENDERERS)}")


def render_example(ex: CanonicalExample, fmt: str, seed: int = DEFAULT_FILLER_SEED) -> list[dict[str, Any]]:
    """The records of one example in one format."""
    _check_format(fmt)
    return RENDERERS[fmt](ex, seed)


def render_records(examples: Sequence[CanonicalExample], fmt: str, seed: int = DEFAULT_FILLER_SEED) -> list[dict]:
    """Every example rendered in ``fmt``, in canonical order."""
    _check_format(fmt)
    return [rec for ex in examples for rec in RENDERERS[fmt](ex, seed)]


def render_all(
    examples: Sequence[CanonicalExample], formats: Sequence[str] = FORMATS, seed: int = DEFAULT_FILLER_SEED
) -> dict[str, list[dict]]:
    """``{format: records}`` for every requested format."""
    return {fmt: render_records(examples, fmt, seed) for fmt in formats}


def records_text(records: Sequence[dict]) -> str:
    """JSON Lines text of ``records`` exactly as written to disk (one object a line, keys in order)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# --------------------------------------------------------------------------- writing


def render_meta(canonical: str | Path, formats: Sequence[str], seed: int) -> dict[str, Any]:
    """Provenance written beside the rendered files; deterministic (no clock), so re-rendering is a no-op diff."""
    return {
        "canonical": Path(canonical).name,
        "canonical_sha256": sha256_file(canonical),
        "formats": list(formats),
        "filler_version": FILLER_VERSION,
        "filler_seed": seed,
        "harness_version": __version__,
    }


def write_rendered(output_dir: str | Path, rendered: dict[str, list[dict]], meta: dict[str, Any]) -> list[Path]:
    """Write ``<format>.jsonl`` for every format, then the meta file; each write is atomic.

    Call it only with a complete render: rendering happens in memory first, so a
    failed render never replaces an existing file.
    """
    out = Path(output_dir)
    written = []
    for fmt, records in rendered.items():
        target = out / f"{fmt}.jsonl"
        atomic_write_text(target, records_text(records))
        written.append(target)
    atomic_write_text(out / RENDER_META_NAME, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return written


# --------------------------------------------------------------------------- CLI


def _formats_arg(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown format name(s) {bad or value!r}; expected some of {list(FORMATS)}")
    return names


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``formablate render``."""
    p = subparsers.add_parser(
        "render",
        help="render canonical content into the six training formats",
        description="Render a canonical JSONL file into <output-dir>/<format>.jsonl (atomic writes; nothing is "
        "written unless every example renders).",
    )
    p.add_argument("--canonical", required=True, help="canonical JSONL file (data/canonical/<name>.jsonl)")
    p.add_argument("--output-dir", required=True, help="directory for <format>.jsonl (data/sft/<name>/)")
    p.add_argument("--manifest", default=None, help="dataset manifest (default: <name>.manifest.yaml beside it)")
    p.add_argument(
        "--formats", type=_formats_arg, default=None,
        help="comma-separated formats (default: the manifest's formats, or all six without a manifest)",
    )
    p.add_argument("--filler-seed", type=int, default=DEFAULT_FILLER_SEED, help="seed of the bad_format_control filler")
    p.set_defaults(run=run)
    return p


def blend_bytes(parts: Sequence[str | Path]) -> bytes:
    """A blend of rendered files: line i of ``parts[i % len(parts)]``, byte for byte (manifest ``blends``).

    The files must list the same record ids in the same order (renderings of one canonical file).
    """
    sources = [Path(p).read_bytes().splitlines() for p in parts]
    n = len(sources[0])
    if any(len(s) != n for s in sources):
        raise DataError(str(parts[0]), None, "blends", f"found files of {[len(s) for s in sources]} records, "
                        "expected renderings of one canonical file (equal lengths)")
    out = []
    for i in range(n):
        ids = {json.loads(s[i])["id"] for s in sources}
        if len(ids) != 1:
            raise DataError(str(parts[0]), i + 1, "blends", f"found ids {sorted(ids)}, expected one id per line")
        out.append(sources[i % len(sources)][i] + b"\n")
    return b"".join(out)


def run(args: argparse.Namespace) -> int:
    """Render; exit 0 on success, 1 when a canonical line breaks a rule (nothing written)."""
    canonical = Path(args.canonical)
    if not canonical.is_file():
        raise MissingFileError(f"{canonical}: file not found (--canonical)")
    manifest_path = Path(args.manifest) if args.manifest else manifest_path_for(canonical)
    formats = args.formats
    if formats is None:
        if args.manifest or manifest_path.is_file():
            formats = list(load_manifest(manifest_path).formats)
        else:
            formats = list(FORMATS)
    loaded = load_canonical(canonical)
    if loaded.failures:
        for failure in loaded.failures:
            print(failure.format(), file=sys.stderr)
        print(f"render: {len(loaded.failures)} invalid line(s); nothing written", file=sys.stderr)
        return 1
    examples = [ex for _, ex in loaded.examples]
    rendered = render_all(examples, formats, args.filler_seed)
    written = write_rendered(args.output_dir, rendered, render_meta(canonical, formats, args.filler_seed))
    for path, fmt in zip(written, formats):
        print(f"{path}: {len(rendered[fmt])} records ({fmt})")
    blends = load_manifest(manifest_path).blends if manifest_path.is_file() else {}
    for blend, parts in blends.items():  # the manifest's blends of the formats just rendered
        if all(f in formats for f in parts):
            target = Path(args.output_dir) / f"{blend}.jsonl"
            data = blend_bytes([Path(args.output_dir) / f"{f}.jsonl" for f in parts])
            atomic_write_bytes(target, data)
            records = data.count(b"\n")
            print(f"{target}: {records} records (blend of {', '.join(parts)})")
    return 0
