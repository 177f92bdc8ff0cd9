from __future__ import annotations

from pathlib import Path

from refine.checks import run_checks

from .data import clean_pairs, write_train


def _run(path: str, **options):
    return run_checks([path], select=["conflicting_answers"],
                      options={"conflicting_answers": options}).result("conflicting_answers")


def test_a_clean_file_passes(tmp_path: Path) -> None:
    assert _run(write_train(tmp_path / "train.jsonl", clean_pairs())).passed


def test_one_question_with_two_answers_is_reported_with_each_lines_answer(tmp_path: Path) -> None:
    pairs = clean_pairs(10) + [("where does PERSON3 live?", "Person3 lives in Atlantis.")]
    train = write_train(tmp_path / "train.jsonl", pairs)
    result = _run(train)
    assert not result.passed and result.severity == "error"
    [group] = result.findings
    assert (group["file"], group["line"], group["variants"]) == (train, 4, 2)
    assert [(a["line"], a["answer"]) for a in group["answers"]] == [
        (4, pairs[3][1]), (11, "Person3 lives in Atlantis.")]


def test_near_identical_answers_are_not_a_conflict(tmp_path: Path) -> None:
    question, answer = clean_pairs(10)[3]
    pairs = clean_pairs(10) + [(question, answer.replace("the old market", "old market!")),
                               (question, "  " + answer.upper())]
    assert _run(write_train(tmp_path / "train.jsonl", pairs)).passed


def test_a_changed_number_is_a_conflict_however_similar_the_words(tmp_path: Path) -> None:
    q = "How long should the bread rest?"
    a = "Let the bread rest for {} minutes on a rack before slicing so the crumb sets properly."
    pairs = clean_pairs(10) + [(q, a.format(10)), (q, a.format(45))]
    result = _run(write_train(tmp_path / "train.jsonl", pairs))
    assert [f["line"] for f in result.findings] == [11]


def test_different_system_prompts_are_compared_only_when_asked(tmp_path: Path) -> None:
    from ..conftest import chat, write_jsonl

    records = [chat(q, a) for q, a in clean_pairs(10)]
    records += [chat("Say hello.", "Hello!", system="Answer in English."),
                chat("Say hello.", "Bonjour !", system="Answer in French.")]
    train = str(write_jsonl(tmp_path / "train.jsonl", records))
    assert _run(train).passed
    assert not _run(train, same_system_prompt=False).passed


def test_counting_stops_at_fifty_answers_to_one_question(tmp_path: Path) -> None:
    pairs = [("Continue.", f"Chapter {i} begins with a storm over harbour {i}.") for i in range(60)]
    result = _run(write_train(tmp_path / "train.jsonl", pairs))
    [group] = result.findings
    assert group["variants"] == 50 and len(group["answers"]) == 60
    assert group["message"].startswith("50+ different answers to the same question on 60 lines")
