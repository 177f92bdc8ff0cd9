"""Answering an eval set with a model: the model's own greedy answers, in refine's eval layout
with the references kept and the old verdicts dropped; a crash resumes without answering again;
a service is asked as the official SDK asks it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refine import AnswerSettings, ConfigError, InputError, RunDirError, answer_eval, load_eval

from refine.seekrflow.client import SeekrFlowError

from .conftest import SAMPLE, write_jsonl
from .recording import Recorder, recording

pytest.importorskip("transformers")

BASE = SAMPLE / "generalise" / "tiny_lm"
SETTINGS = AnswerSettings(max_new_tokens=96, batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """12 eval items of the generalising sample whose given answers are the tiny LM's own greedy
    answers (96 new tokens at most), all short, so a batch ends early."""
    root = tmp_path_factory.mktemp("answering")
    rows = [json.loads(line) for line in (SAMPLE / "generalise" / "eval.jsonl").read_text().splitlines()]
    chosen = [r for r in rows if len(r["answer"]) < 60][:12]
    return {"root": root, "rows": chosen, "eval": write_jsonl(root / "eval.jsonl", chosen)}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_local_model_gives_its_own_greedy_answers_and_the_references_stay(items: dict) -> None:
    out = items["root"] / "answers.jsonl"
    result = answer_eval(items["eval"], BASE, out, settings=SETTINGS, progress=False)
    assert (result.items, result.answered, result.resumed) == (12, 12, 0)
    written = _lines(out)
    assert [r["id"] for r in written] == [r["id"] for r in items["rows"]]
    for new, old in zip(written, items["rows"]):
        assert new == {"id": old["id"], "question": old["question"], "system_prompt": old["system_prompt"],
                       "reference": old["reference"], "answer": old["answer"]}   # no verdict
    graded = load_eval(str(out))
    assert all(i.verdict is None and i.reference and i.answer for i in graded.items)
    # Done once: asked again, it answers nothing and writes the same bytes.
    again = answer_eval(items["eval"], BASE, out, settings=SETTINGS, progress=False)
    assert (again.answered, again.resumed) == (0, 12) and _lines(out) == written


def test_a_crash_resumes_without_answering_again(items: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from refine.stages import answering

    out = items["root"] / "crashed.jsonl"
    settings = AnswerSettings(max_new_tokens=96, batch_size=4, device="cpu")
    real = answering._Local.answers
    batches: list[int] = []

    def crashing(self, todo, done, file):
        for batch in real(self, todo, done, file):
            batches.append(len(batch))
            if len(batches) == 2:
                raise KeyboardInterrupt   # killed with the second batch generated, not saved
            yield batch

    monkeypatch.setattr(answering._Local, "answers", crashing)
    with pytest.raises(KeyboardInterrupt):
        answer_eval(items["eval"], BASE, out, settings=settings, progress=False)
    monkeypatch.setattr(answering._Local, "answers", real)
    assert not out.exists()
    journal = out.with_name(out.name + ".journal")
    assert len(journal.read_text().splitlines()) == 1 + 4     # the header and one batch
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write('{"id": "g-0')                                # a line torn by the crash
    resumed = answer_eval(items["eval"], BASE, out, settings=settings, progress=False)
    assert (resumed.resumed, resumed.answered) == (4, 8)
    uninterrupted = answer_eval(items["eval"], BASE, items["root"] / "whole.jsonl", settings=settings,
                                progress=False)
    assert out.read_bytes() == uninterrupted.path.read_bytes()
    # Other settings decide other answers: the journal starts afresh.
    shorter = answer_eval(items["eval"], BASE, out, settings=AnswerSettings(max_new_tokens=2, device="cpu"),
                          progress=False)
    assert shorter.answered == 12 and all(len(r["answer"]) < 25 for r in _lines(out))


def test_what_it_refuses(items: dict, tmp_path: Path) -> None:
    unreferenced = write_jsonl(tmp_path / "eval.jsonl", [
        {"id": "a", "question": "q?", "reference": "r"}, {"id": "b", "question": "q2?", "verdict": "bad",
                                                           "answer": "x"}])
    with pytest.raises(InputError, match="eval.jsonl:2: field 'reference': is needed"):
        answer_eval(unreferenced, BASE, tmp_path / "out.jsonl", progress=False)
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_text("somebody's file\n")
    with pytest.raises(RunDirError, match="answer_eval did not write it"):
        answer_eval(items["eval"], BASE, theirs, settings=SETTINGS, progress=False)
    assert theirs.read_text() == "somebody's file\n"
    with pytest.raises(ConfigError, match="'model': .*does not exist"):
        answer_eval(items["eval"], tmp_path / "no-model", tmp_path / "out.jsonl", progress=False)


# --- through a service -------------------------------------------------------------------------
def _chat(method: str, path: str, raw: bytes) -> tuple[int, dict]:
    body = json.loads(raw)
    if body["model"] == "ft-missing":
        return 404, {"detail": "no model 'ft-missing'"}
    question = body["messages"][-1]["content"]
    return 200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": f" echo: {question} "}}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.fixture
def recorder():
    with recording(_chat, lambda kind, raw: json.loads(raw)) as server:
        yield server


def test_a_service_is_asked_as_the_sdk_asks_it(items: dict, recorder: Recorder, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSWER_KEY", "sk-answer-1")
    out = tmp_path / "served.jsonl"
    result = answer_eval(items["eval"], "ft-0123", out, settings=AnswerSettings(max_new_tokens=40, batch_size=3),
                         base_url=recorder.url, api_key_env="ANSWER_KEY", progress=False)
    assert result.answered == 12 and len(recorder.requests) == 12
    written = _lines(out)
    assert [r["answer"] for r in written] == [f"echo: {r['question']}" for r in items["rows"]]
    first = items["rows"][0]
    sent = next(r for r in recorder.requests if r["body"]["messages"][-1]["content"] == first["question"])
    assert sent["target"] == "/v1/inference/chat/completions" and sent["authorization"] == "sk-answer-1"
    seekrai = pytest.importorskip("seekrai")
    with seekrai.SeekrFlow(api_key="sk-answer-1", base_url=recorder.url) as client:
        client.chat.completions.create(model="ft-0123", max_tokens=40, temperature=0,
                                       messages=[{"role": "system", "content": first["system_prompt"]},
                                                 {"role": "user", "content": first["question"]}])
    assert recorder.requests[-1]["body"] == sent["body"]          # the SDK's very request
    with pytest.raises(SeekrFlowError, match="HTTP 404: no model 'ft-missing'"):
        answer_eval(items["eval"], "ft-missing", tmp_path / "missing.jsonl", base_url=recorder.url,
                    api_key_env="ANSWER_KEY", progress=False)
