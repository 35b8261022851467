"""Every validator rule: quiet on the good fixture, firing (with file, line and rule) on a small bad copy."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from formablate.data import rules_canonical as canon
from formablate.data import rules_rendered as rendered
from formablate.data.context import DatasetContext, load_canonical, load_eval, load_manifest
from formablate.data.render import render_meta, render_records, write_rendered
from formablate.data.validate import RULES, rules, validate
from formablate.errors import DataError, DataFileError, MissingFileError

FIXTURES = Path(__file__).parent / "fixtures" / "data"
_spec = importlib.util.spec_from_file_location("fake_checks", FIXTURES / "fake_checks.py")
fake_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_checks)


def _lines() -> list[dict]:
    return [json.loads(s) for s in (FIXTURES / "canonical" / "tiny.jsonl").read_text().splitlines()]


def make_dataset(tmp_path: Path, mutate=None, manifest=None, rerender: bool = True, **options) -> DatasetContext:
    """A copy of the fixture under tmp_path; ``mutate(list_of_dicts)`` edits the canonical lines first."""
    rows = _lines()
    if mutate:
        mutate(rows)
    canon_dir = tmp_path / "canonical"
    canon_dir.mkdir(parents=True, exist_ok=True)
    path = canon_dir / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    man = yaml.safe_load((FIXTURES / "canonical" / "tiny.manifest.yaml").read_text())
    if manifest:
        manifest(man)
    (canon_dir / "tiny.manifest.yaml").write_text(yaml.safe_dump(man))
    out = tmp_path / "sft" / "tiny"
    if rerender:
        examples = [ex for _, ex in load_canonical(path).examples]
        formats = [f for f in man["formats"] if f in rendered.FORMAT_SHAPE]
        write_rendered(out, {f: render_records(examples, f) for f in formats}, render_meta(path, formats, 42))
    else:
        shutil.copytree(FIXTURES / "sft" / "tiny", out)
    options.setdefault("checker", fake_checks.check)
    options.setdefault("max_length", 4096)
    return DatasetContext.load(path, out, **options)


def edit_records(ds: DatasetContext, fmt: str, edit) -> None:
    """Rewrite one rendered file through ``edit(list_of_records)``."""
    path = ds.format_path(fmt)
    recs = [json.loads(s) for s in path.read_text().splitlines()]
    edit(recs)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    ds._records.clear()


def fired(result, rule: str) -> list:
    assert all(f.rule == rule for f in result.failures), [f.format() for f in result.failures]
    return result.failures


@pytest.fixture
def good(tmp_path):
    return make_dataset(tmp_path)


# --------------------------------------------------------------------------- the good fixture


def test_the_good_fixture_passes_every_rule(good):
    ev = load_eval(FIXTURES / "eval" / "tiny_eval.jsonl")
    report = validate(good, ev, eval_checker=fake_checks.check)
    assert report.valid, "\n".join(f.format() for f in report.failures)
    assert any("highest near-duplicate pair" in n for n in report.notes)
    assert any("answer words per domain" in n for n in report.notes)


def test_rules_table_is_complete():
    names = {(r.scope, r.name) for r in RULES}
    assert len(names) == len(RULES), "a rule is listed twice"
    for scope in ("dataset", "format", "eval", "contamination"):
        assert rules(scope)
    assert all(r.doc for r in RULES), "every rule needs a docstring saying what it requires"


# --------------------------------------------------------------------------- canonical rules


def test_schema_and_duplicate_id_collect_every_bad_line(tmp_path):
    def mutate(rows):
        rows[1]["exchanges"] = "not a list"  # wrong type, line 2
        rows[2]["domain"] = "poetry"  # unknown domain, line 3
        rows.append(dict(rows[0]))  # duplicate id, line 10

    ds = make_dataset(tmp_path, mutate)
    schema = fired(canon.schema(ds), "schema")
    assert [f.line for f in schema] == [2, 3]
    assert "exchanges" in schema[0].message and "poetry" in schema[1].message
    dup = fired(canon.duplicate_id(ds), "duplicate_id")
    assert [(f.line, f.rule) for f in dup] == [(10, "duplicate_id")] and "coding-001" in dup[0].message
    assert canon.schema(make_dataset(tmp_path / "ok")).failures == []


def test_malformed_jsonl_line_is_a_usage_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "coding-001"}\n{not json\n')
    with pytest.raises(DataFileError) as info:
        load_canonical(path)
    assert info.value.format().startswith(f"{path}:2: jsonl: malformed JSON")
    with pytest.raises(MissingFileError):
        load_canonical(tmp_path / "absent.jsonl")


def test_manifest_rule_and_invalid_manifest(tmp_path):
    ds = make_dataset(tmp_path, manifest=lambda m: m.update(name="other"))
    assert "found name='other', expected 'tiny'" in fired(canon.manifest(ds), "manifest")[0].message
    assert canon.manifest(make_dataset(tmp_path / "ok")).failures == []
    bad = tmp_path / "bad.manifest.yaml"
    bad.write_text("name: tiny\ndescription: x\ntotal: 1\ndomain_counts: {coding: 1}\nformats: [chatml]\n")
    with pytest.raises(DataError) as info:
        load_manifest(bad)
    assert info.value.rule == "manifest" and info.value.line == 5 and "chatml" in info.value.message


def test_domain_counts(tmp_path):
    def manifest(m):
        m["domain_counts"]["coding"] = 2
        m["domain_counts"]["general"] = 0

    failures = fired(canon.domain_counts(make_dataset(tmp_path, manifest=manifest)), "domain_counts")
    assert {f.message for f in failures} == {
        "found 1 valid examples of domain='coding', expected 2 (manifest)",
        "found 1 valid examples of domain='general', expected 0 (manifest)",
    }


def test_reuse_allows_identical_examples_only(tmp_path):
    base = make_dataset(tmp_path)
    mix_path = base.canonical_path.with_name("mix.jsonl")
    rows = _lines()
    mix_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    man = yaml.safe_load(base.manifest_path.read_text())
    man.update(name="mix", reuses="tiny")
    base.manifest_path.with_name("mix.manifest.yaml").write_text(yaml.safe_dump(man))
    mix = DatasetContext.load(mix_path, base.dataset_dir, checker=fake_checks.check)
    ok = canon.reuse(mix)
    assert ok.failures == [] and "9 examples reused from tiny" in ok.notes[0]
    rows[4]["exchanges"][0]["answer"] = "Changed."
    mix_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mix = DatasetContext.load(mix_path, base.dataset_dir, checker=fake_checks.check)
    (failure,) = fired(canon.reuse(mix), "reuse")
    assert failure.line == 5 and "reasoning-001" in failure.message


def test_format_files(good):
    assert canon.format_files(good).failures == []
    good.format_path("structured_terse").unlink()
    (good.dataset_dir / "chatml.jsonl").write_text("")
    messages = [f.message for f in fired(canon.format_files(good), "format_files")]
    assert any("no file for format='structured_terse'" in m for m in messages)
    assert any("unknown format 'chatml'" in m for m in messages)


def test_constraints_rule_fires_on_an_answer_breaking_its_own_limit(tmp_path):
    def mutate(rows):
        rows[6]["exchanges"][1]["answer"] = "Ice is less dense than water, honestly, truly."  # max_words 5

    (failure,) = fired(canon.constraints(make_dataset(tmp_path, mutate)), "constraints")
    assert failure.line == 7 and "concision-001 exchange 1: found max_words failing" in failure.message


def test_constraints_rule_without_a_checker_fails_clearly(tmp_path):
    ds = make_dataset(tmp_path, checker=None)
    ds.checker_error = "the constraint checker formablate.judges.checks.check is not available (test)"
    (failure,) = fired(canon.constraints(ds), "constraints")
    assert "not available" in failure.message


def test_a_checker_exception_is_a_failure_not_a_crash(tmp_path):
    def broken(constraint, text):
        raise ValueError("bad regex")

    failures = fired(canon.constraints(make_dataset(tmp_path, checker=broken)), "constraints")
    assert failures and "the checker raised ValueError: bad regex" in failures[0].message


def test_python_tests_run_for_the_answer_and_for_the_original(tmp_path):
    def mutate(rows):
        rows[0]["exchanges"][0]["answer"] = rows[0]["exchanges"][0]["answer"].replace("distinct[1]", "distinct[0]")
        c = rows[1]["exchanges"][0]["constraints"][0]
        c["original"] = c["original"].replace("b = b + c", "b = b - c")

    failures = fired(canon.python_tests(make_dataset(tmp_path, mutate)), "python_tests")
    assert [(f.line, "original" in f.message) for f in failures] == [(1, False), (2, True)]
    assert "coding-001 exchange 0: found python_tests failing on its answer" in failures[0].message


def test_json_parses(tmp_path):
    def mutate(rows):
        rows[2]["exchanges"][1]["answer"] = '{"order_id": 4471, "customer": "Lena Ortiz",}'

    (failure,) = fired(canon.json_parses(make_dataset(tmp_path, mutate)), "json_parses")
    assert failure.line == 3 and "json-001 exchange 1" in failure.message
    assert canon.json_parses(make_dataset(tmp_path / "ok")).failures == []


def test_gamefaq_grounding(tmp_path):
    def mutate(rows):
        rows[3]["exchanges"][0]["constraints"][1]["value"]["boss"] = "Gloom Toad"  # not verbatim in the passage

    (failure,) = fired(canon.gamefaq_grounding(make_dataset(tmp_path, mutate)), "gamefaq_grounding")
    assert failure.line == 4 and "'Gloom Toad'" in failure.message
    assert canon.gamefaq_grounding(make_dataset(tmp_path / "ok")).failures == []


def _clone(rows, src: int, new_id: str, user: str, answer: str) -> dict:
    row = json.loads(json.dumps(rows[src]))
    row["id"] = new_id
    row["exchanges"][0]["user"] = user
    row["exchanges"][0]["answer"] = answer
    row["exchanges"][1]["user"] = f"Follow-up for {new_id}, different each time?"
    row["exchanges"][1]["answer"] = f"A distinct answer for {new_id} about towels {new_id[-1]}."
    return row


def test_prompt_diversity_allows_three_and_flags_four(tmp_path):
    stem = "how do i get rid of the musty smell in my"

    def add(n):
        def mutate(rows):
            rows[7]["exchanges"][0]["user"] = f"{stem} towels"
            for i in range(n - 1):
                rows.append(_clone(rows, 7, f"general-00{i + 2}", f"{stem} item number {i}", f"Unrelated answer {i}."))
        return mutate

    from formablate.data.contamination import prompt_diversity

    def manifest(n):
        return lambda m: (m["domain_counts"].update(general=n), m.update(total=8 + n))

    assert prompt_diversity(make_dataset(tmp_path / "three", add(3), manifest(3))).failures == []
    (failure,) = fired(prompt_diversity(make_dataset(tmp_path / "four", add(4), manifest(4))), "prompt_diversity")
    assert failure.line == 8 and "found 4 general user prompts" in failure.message


def test_exact_and_near_duplicates(tmp_path):
    from formablate.data.contamination import exact_duplicate, near_duplicate

    def mutate(rows):
        twin = json.loads(json.dumps(rows[7]))
        twin["id"] = "general-002"
        twin["exchanges"][1]["answer"] = "Use baking soda alone and dry them in the sun if you can."
        rows.append(twin)

    ds = make_dataset(tmp_path, mutate)
    (exact,) = fired(exact_duplicate(ds), "exact_duplicate")
    assert exact.line == 10 and "general-002" in exact.message and "general-001" in exact.message
    (near,) = fired(near_duplicate(ds), "near_duplicate")
    assert near.line == 10 and "Jaccard" in near.message
    good = make_dataset(tmp_path / "ok")
    result = near_duplicate(good)
    assert result.failures == [] and exact_duplicate(good).failures == []
    assert "highest near-duplicate pair" in result.notes[0]


# --------------------------------------------------------------------------- rendered-file rules


def test_record_schema(good):
    assert rendered.record_schema(good, "alpaca_flat").failures == []
    edit_records(good, "multi_turn_concise", lambda r: r[0]["messages"].reverse())
    edit_records(good, "alpaca_flat", lambda r: r[2].update(extra="x"))
    (roles,) = fired(rendered.record_schema(good, "multi_turn_concise"), "record_schema")
    assert roles.line == 1 and "expected user/assistant alternating" in roles.message
    (extra,) = fired(rendered.record_schema(good, "alpaca_flat"), "record_schema")
    assert extra.line == 3 and "extra" in extra.message


def test_empty_turn(good):
    assert rendered.empty_turn(good, "single_turn_chat").failures == []
    edit_records(good, "single_turn_chat", lambda r: r[4]["messages"][1].update(content=" \n\t"))
    (failure,) = fired(rendered.empty_turn(good, "single_turn_chat"), "empty_turn")
    assert failure.line == 5 and "empty assistant turn" in failure.message


def test_ids(good):
    assert rendered.ids(good, "alpaca_flat").failures == []

    def edit(recs):
        recs[1]["id"] = recs[0]["id"]  # duplicate; coding-001#1 now missing
        recs[2]["source_id"] = "json-001"  # deobfuscation-001 record with a wrong source id
        del recs[-1]

    edit_records(good, "alpaca_flat", edit)
    messages = [(f.line, f.message) for f in fired(rendered.ids(good, "alpaca_flat"), "ids")]
    assert messages[0][0] == 2 and "found id='coding-001' again" in messages[0][1]
    assert messages[1][0] == 3 and "source_id='json-001'" in messages[1][1]
    assert messages[2][0] is None and "coding-001#1" in messages[2][1] and "multi_turn-001#2" in messages[2][1]


def test_content_equivalence(good):
    assert all(rendered.content_equivalence(good, f).failures == [] for f in good.manifest.formats)

    def edit(recs):
        recs[2]["messages"][1]["content"] = '{"order_id": 4471}'  # the answer lost fields
        recs[3]["messages"][0]["content"] = "A different question."  # user turn and context gone

    edit_records(good, "structured_terse", edit)
    failures = fired(rendered.content_equivalence(good, "structured_terse"), "content_equivalence")
    assert [f.line for f in failures] == [3, 4, 4]
    assert "the answer of exchange 0 missing" in failures[0].message
    assert "the context missing" in failures[2].message


def test_content_equivalence_checks_the_verbose_explanation(good):
    edit_records(good, "multi_turn_verbose",
                 lambda r: r[5]["messages"][1].update(content=r[5]["messages"][1]["content"].split("\n\n")[0]))
    (failure,) = fired(rendered.content_equivalence(good, "multi_turn_verbose"), "content_equivalence")
    assert failure.line == 6 and "explanation of exchange 0" in failure.message


def test_fresh_render_names_the_line_and_key(good):
    assert rendered.fresh_render(good, "bad_format_control").failures == []
    edit_records(good, "bad_format_control", lambda r: r[6]["messages"][0].update(content="Edited by hand"))
    (failure,) = fired(rendered.fresh_render(good, "bad_format_control"), "fresh_render")
    assert failure.line == 7 and "key 'messages'" in failure.message and "run formablate render" in failure.message


def test_fresh_render_with_another_filler_seed(tmp_path):
    ds = make_dataset(tmp_path, filler_seed=7)
    failures = fired(rendered.fresh_render(ds, "bad_format_control"), "fresh_render")
    assert failures and rendered.fresh_render(ds, "multi_turn_concise").failures == []


def test_token_length_bound_counter_and_missing_tokenizer(tmp_path):
    ds = make_dataset(tmp_path, max_length=700)
    over = [line for line, obj in ds.records("bad_format_control") if rendered.token_bound(obj) > 700]
    assert over, "the fixture should have records the byte bound cannot prove under 700"
    failures = fired(rendered.token_length(ds, "bad_format_control"), "token_length")
    assert [f.line for f in failures] == over and "pass --tokenizer SOURCE" in failures[0].message
    ds.token_counter = lambda rec: 10  # a counter that finds every record short
    ok = rendered.token_length(ds, "bad_format_control")
    assert ok.failures == [] and f"{len(over)} counted with the tokenizer" in ok.notes[0]
    ds.token_counter = lambda rec: 701
    assert len(fired(rendered.token_length(ds, "bad_format_control"), "token_length")) == len(over)
    ds.token_counter, ds.tokenizer_source = None, "tiny:nonexistent"
    failures = fired(rendered.token_length(ds, "bad_format_control"), "token_length")
    assert "tiny:nonexistent" in failures[0].message


def test_token_bound_holds_for_a_byte_level_bpe_tokenizer(good):
    """The bound's premise, checked on a real byte-level BPE tokenizer with a ChatML template."""
    models = pytest.importorskip("formablate.models")
    counter = rendered.hf_token_counter(models.load_tokenizer("tiny:llama"))
    for fmt in good.manifest.formats:
        for _, rec in good.records(fmt):
            assert counter(rec) <= rendered.token_bound(rec), (fmt, rec["id"])


# --------------------------------------------------------------------------- eval rules


def test_eval_rules(tmp_path):
    rows = [json.loads(s) for s in (FIXTURES / "eval" / "tiny_eval.jsonl").read_text().splitlines()]
    good = load_eval(FIXTURES / "eval" / "tiny_eval.jsonl")
    assert canon.eval_schema(good).failures == []
    assert canon.reference_constraints(good, fake_checks.check).failures == []
    rows[1]["category"] = "poetry"
    rows.append(dict(rows[0]))
    rows[2]["reference"] = "GREEN, usually."  # breaks letter_case... which the fake does not check
    rows[2]["constraints"] = [{"kind": "contains", "text": "lime"}]
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = load_eval(path)
    assert [f.line for f in fired(canon.eval_schema(ev), "schema")] == [2]
    assert [f.line for f in fired(canon.eval_duplicate_id(ev), "duplicate_id")] == [4]
    (ref,) = fired(canon.reference_constraints(ev, fake_checks.check), "reference_constraints")
    assert ref.line == 3 and "eval-multi_turn-001" in ref.message


@pytest.mark.slow
def test_token_bound_holds_for_the_packaged_smollm2_tokenizer(good):
    """The premise with the offline default model's real tokenizer (read from its GGUF, no weights loaded)."""
    counter = rendered.load_token_counter("packaged:smollm2-135m-instruct")
    ratios = []
    for fmt in good.manifest.formats:
        for _, rec in good.records(fmt):
            n, bound = counter(rec), rendered.token_bound(rec)
            assert n <= bound, (fmt, rec["id"], n, bound)
            ratios.append(n / bound)
    assert max(ratios) < 1


# --------------------------------------------------------------------------- formats that differ


def test_format_identity_reports_every_pair_and_fails_when_two_formats_mostly_coincide(tmp_path):
    ds = make_dataset(tmp_path)
    ok = rendered.format_identity(ds)
    assert not ok.failures
    pair = next(n for n in ok.notes if "multi_turn_concise vs structured_terse" in n)
    assert pair.startswith("format_identity: multi_turn_concise vs structured_terse: 5/9 records identical")
    assert "WARNING" in pair  # 56 % is above the warning share, below the failure share
    assert sum(n.startswith("format_identity:") for n in ok.notes) == 15  # every pair of the six formats

    # structured_terse rendered as the concise chat: every record identical -> one failure naming the file
    concise = [json.loads(s) for s in ds.format_path("multi_turn_concise").read_text().splitlines()]
    edit_records(ds, "structured_terse", lambda recs: recs.__setitem__(slice(None), concise))
    bad = rendered.format_identity(ds)
    [failure] = fired(bad, "format_identity")
    assert failure.file.endswith("structured_terse.jsonl")
    assert "found 9/9 records identical to multi_turn_concise" in failure.message
