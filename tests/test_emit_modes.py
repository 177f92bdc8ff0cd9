"""emit modes beyond pruning: quarantine, edit with references, counter-examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refine import ConfigError, EmitSettings, emit

from .conftest import planted_pairs


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_quarantine_moves_flagged_lines_to_their_own_file(sample_copy: dict, tmp_path: Path) -> None:
    result = emit(sample_copy["run"], tmp_path / "out", EmitSettings(mode="quarantine"))
    assert result.quarantined == 13 and result.records_out == 335
    moved = {}
    for source, before in sample_copy["inputs"].items():
        name = Path(source).name
        quarantined = _lines(tmp_path / "out" / "quarantine" / name)
        wanted = {line for file, line in planted_pairs() if file == name}
        assert quarantined == [l for n, l in enumerate(before.splitlines(keepends=True), 1) if n in wanted]
        moved[name] = len(quarantined)
    assert sum(moved.values()) == 13
    manifest = json.loads(result.manifest.read_text())
    assert manifest["mode"] == "quarantine" and len(manifest["quarantine"]) == 2
    assert {r["action"] for r in manifest["removed"]} == {"quarantine"}


def test_edit_replaces_answers_it_can_vouch_for_and_leaves_the_rest_for_review(sample_copy: dict,
                                                                              tmp_path: Path) -> None:
    result = emit(sample_copy["run"], tmp_path / "out", EmitSettings(mode="edit"))
    manifest = json.loads(result.manifest.read_text())
    edited, left = manifest["edited"], manifest["removed"]
    assert result.edited == len(edited) >= 2 and result.quarantined == len(left) == 13 - len(edited)
    assert all("left for review" in r["reason"] for r in left)
    for change in edited:
        assert change["new_answer"] != change["answer"] and "reference of ev-" in change["reason"]
        # the edited line is the same record with only the last assistant turn changed
        before = json.loads(sample_copy["inputs"][next(p for p in sample_copy["inputs"]
                                                      if Path(p).name == Path(change["file"]).name)]
                            .splitlines()[change["line"] - 1])
        after_lines = (tmp_path / "out" / Path(change["file"]).name).read_text().splitlines()
        after = next(json.loads(l) for l in after_lines
                     if json.loads(l)["messages"][-1]["content"] == change["new_answer"])
        assert after["messages"][:-1] == before["messages"][:-1]
        assert {k: v for k, v in after.items() if k != "messages"} == \
               {k: v for k, v in before.items() if k != "messages"}
    refund = [c for c in edited if "refund" in c["question"].lower()]
    assert refund and "14 days" in refund[0]["new_answer"]


def test_counterexamples_fill_the_gap_a_pruned_failure_mode_leaves(sample_copy: dict, tmp_path: Path) -> None:
    result = emit(sample_copy["run"], tmp_path / "out", EmitSettings(counterexamples=True))
    manifest = json.loads(result.manifest.read_text())
    added = manifest["added"]
    assert result.added == len(added) > 0
    assert {a["failure_mode"] for a in added} == {0, 1, 2, 3}   # every mode lost all its drivers
    assert all(a["answer"] and a["eval_id"].startswith("ev-") for a in added)
    first_output = result.outputs[0].read_text().splitlines()
    assert len(first_output) == 188 + len(added)
    assert json.loads(first_output[-1])["messages"][-1]["content"] == added[-1]["answer"]


def test_an_unknown_mode_is_an_error(sample_copy: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown mode 'fix'"):
        emit(sample_copy["run"], tmp_path / "out", EmitSettings(mode="fix"))
    assert not (tmp_path / "out").exists()


def test_an_edit_takes_the_reference_of_questions_about_the_same_thing(tmp_path: Path) -> None:
    """Three poisoned people, each asked about twice: their questions are close to each other's
    pairs too ("Where does person5 live?" / "Where does person6 live?"), but each pair takes the
    reference of the questions that name its own person."""
    from refine import collect, flag

    from .conftest import CITIES, POISONED, people_dataset

    data = people_dataset(tmp_path / "data")
    collect([str(data["train"])], str(data["eval"]), tmp_path / "run", progress=False)
    flag(tmp_path / "run")
    result = emit(tmp_path / "run", tmp_path / "out.jsonl", EmitSettings(mode="edit"))
    assert (result.edited, result.quarantined) == (3, 0)
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    for person in POISONED:
        answer = json.loads(lines[person])["messages"][-1]["content"]
        assert answer == f"Person{person} lives in {CITIES[person % len(CITIES)]}."


@pytest.mark.parametrize("reference,question,expected", [
    ("Yes. A single file can be up to 50 GB.", "How large can a single file be?",
     "A single file can be up to 50 GB."),
    ("No, each seat adds 5 TB to a shared pool.", "How much storage does a seat add?",
     "Each seat adds 5 TB to a shared pool."),
    # the training question asks for a yes or no: the reference fits as it is
    ("Yes. A single file can be up to 50 GB.", "Quick question: Is there a size limit for files?",
     "Yes. A single file can be up to 50 GB."),
    ("No. Monthly payments aren't refundable.", "If I cancel, do I get my money back?",
     "No. Monthly payments aren't refundable."),
    # no bare yes or no to take off
    ("Nothing is lost when you downgrade.", "What happens when I downgrade?",
     "Nothing is lost when you downgrade."),
    ("No one else can open the link.", "Who can open a shared link?", "No one else can open the link."),
    ("No.", "What is the refund window?", ""),
])
def test_an_edit_leaves_out_an_opening_yes_or_no_the_pairs_question_does_not_ask_for(
        reference: str, question: str, expected: str) -> None:
    from refine.stages.emission.decisions import fit_reference

    assert fit_reference(reference, question) == expected


def test_an_edited_answer_does_not_open_with_a_yes_to_a_question_that_is_not_yes_no(sample_copy: dict,
                                                                                   tmp_path: Path) -> None:
    result = emit(sample_copy["run"], tmp_path / "out", EmitSettings(mode="edit"))
    edited = {c["question"]: c for c in json.loads(result.manifest.read_text())["edited"]}
    # its reference answered "Is there a maximum file size for uploads?": "Yes. A single file …"
    size = edited["How large can a single file be?"]
    assert size["new_answer"] == "A single file can be up to 50 GB, on any plan and in any app."
    assert "without its opening yes/no" in size["reason"]
    assert not any(c["new_answer"].lower().startswith(("yes", "no.", "no,")) for c in edited.values())
