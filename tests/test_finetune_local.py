"""Local re-fine-tuning: it learns, it records what it was made from, it gives the same weights
for the same inputs, it does not train twice, a crash resumes, and it never reaches for a hub."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
from pathlib import Path

import pytest

from refine import ConfigError, FinetuneSettings, RunDirError, finetune_local

from .conftest import SAMPLE, chat, write_jsonl

pytest.importorskip("trl")
pytest.importorskip("peft")
safetensors = pytest.importorskip("safetensors.torch")

BASE = SAMPLE / "generalise" / "tiny_lm"    # a 0.5M-parameter GPT-2 trained here, with a chat template
COLOURS = ["red", "blue", "green", "amber"]


def _settings(**changes) -> FinetuneSettings:
    # 16 examples, 8 a step, 3 epochs: 6 steps, a few seconds on a CPU.
    chosen = dict(base_model=str(BASE), lora=False, learning_rate=1e-3, batch_size=8, epochs=3,
                  max_length=64, device="cpu", checkpoint_steps=0)
    return FinetuneSettings(**{**chosen, **changes})


def _module(part: str):
    """A module of the local_training stage (`loop`, `examples`): imported by name, as the stage's
    package shares its name with the function refine exports."""
    return importlib.import_module(f"refine.stages.local_training.{part}")


def _tensors(directory: Path, name: str) -> dict:
    return safetensors.load_file(str(directory / name))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A refined set in two layouts (chat and Alpaca) and one full fine-tune of the tiny model."""
    root = tmp_path_factory.mktemp("finetune")
    records = [chat(f"What colour is widget {i}?", f"Widget {i} is {COLOURS[i % 4]}.",
                    "You answer questions about widgets.") for i in range(14)]
    records += [{"instruction": f"Name the colour of widget {i}.", "input": "",
                 "output": f"Widget {i} is {COLOURS[i % 4]}."} for i in (14, 15)]
    train = write_jsonl(root / "train.refined.jsonl", records)
    trainer = _module("loop").trainer_classes()[0]
    real_train, seen = trainer.train, {}

    def spy(self, *args, **kwargs):   # what the trainer is given to learn from the first record
        seen["labels"] = self.data_collator([self.train_dataset[0]])["labels"][0].tolist()
        seen["tokenizer"] = self.processing_class
        return real_train(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "train", spy)
        model = finetune_local(train, root / "full", _settings(), progress=False)
    return {"root": root, "train": train, "full": model, "seen": seen}


def _lora_settings(**changes) -> FinetuneSettings:
    # Dropout on: a resumed run must also restore the random state.
    return _settings(lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.1, learning_rate=5e-3, **changes)


@pytest.fixture(scope="module")
def lora(world: dict) -> object:
    return finetune_local(world["train"], world["root"] / "lora", _lora_settings(), progress=False)


def test_a_full_fine_tune_learns_and_writes_the_model_and_its_record(world: dict) -> None:
    model = world["full"]
    record = json.loads((model.path / "finetune.json").read_text(encoding="utf-8"))
    assert record == model.record and record["complete"] is True and model.adapter is False
    assert (model.path / "model.safetensors").is_file() and (model.path / "tokenizer.json").is_file()
    losses = [loss for _, loss in record["losses"]]
    assert record["steps"] == 6 and len(losses) == 6 and record["final_loss"] == losses[-1]
    assert losses[-1] < 0.6 * losses[0]
    assert record["base_model"]["path"] == str(BASE.resolve())
    assert record["base_model"]["fingerprint"] == record["inputs"]["base_model_fingerprint"]
    assert record["data"]["sha256"] == record["inputs"]["data_sha256"]
    assert record["data"]["examples"] == record["data"]["records"] == 16
    assert record["chat_template"]["used"] == "tokenizer" and len(record["chat_template"]["sha256"]) == 64
    assert record["seed"] == 0 and record["settings"]["seed"] == 0 and record["device"] == "cpu"
    assert record["data_order"]["epochs"] == 3 and len(record["data_order"]["sha256"]) == 64
    assert {"torch", "transformers", "trl", "peft"} <= set(record["provenance"]["libraries"])
    assert record["output"]["files"]["model.safetensors"]["bytes"] == \
        (model.path / "model.safetensors").stat().st_size
    assert not any(p.name.startswith(".full.") for p in world["root"].iterdir())   # no work dir left


def test_the_loss_is_on_the_answer_alone_rendered_by_the_chat_template(world: dict) -> None:
    labels, tokenizer = world["seen"]["labels"], world["seen"]["tokenizer"]
    taught = [token for token in labels if token != -100]
    assert labels[:len(labels) - len(taught)] == [-100] * (len(labels) - len(taught))
    # The template ends an assistant turn with <|end|> and a newline: the model learns to stop.
    assert tokenizer.decode(taught) == "Widget 0 is red.<|end|>\n"


def test_the_same_data_and_seed_give_the_same_weights(world: dict, tmp_path: Path) -> None:
    again = finetune_local(world["train"], tmp_path / "again", _settings(), progress=False)
    first = _tensors(world["full"].path, "model.safetensors")
    second = _tensors(again.path, "model.safetensors")
    assert first.keys() == second.keys()
    assert all(first[k].equal(second[k]) for k in first)
    assert (again.path / "model.safetensors").read_bytes() == \
        (world["full"].path / "model.safetensors").read_bytes()
    assert again.record["losses"] == world["full"].record["losses"]
    assert again.record["data_order"] == world["full"].record["data_order"]


def test_a_finished_model_is_returned_without_training_again(world: dict, monkeypatch) -> None:
    module = _module("loop")

    record = world["full"].path / "finetune.json"
    before = record.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(module, "train", no_training)
    # checkpoint_steps never changes the weights, nor lora_r a full fine-tune: the same model.
    model = finetune_local(world["train"], world["full"].path, _settings(checkpoint_steps=3, lora_r=99),
                           progress=False)
    assert model.path == world["full"].path and model.record == world["full"].record
    assert record.stat().st_mtime_ns == before


def test_a_finished_model_of_other_inputs_is_not_overwritten(world: dict, tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"settings\.epochs 3 → 2.*replace=True"):
        finetune_local(world["train"], world["full"].path, _settings(epochs=2), progress=False)
    other = write_jsonl(tmp_path / "other.jsonl", [chat("What colour is widget 1?", "Widget 1 is red.")])
    with pytest.raises(RunDirError, match="data_sha256"):
        finetune_local(other, world["full"].path, _settings(), progress=False)
    stranger = tmp_path / "mine"
    (stranger / "notes.txt").parent.mkdir()
    (stranger / "notes.txt").write_text("not a model")
    with pytest.raises(RunDirError, match="holds files but no finetune.json"):
        finetune_local(world["train"], stranger, _settings(), progress=False)
    assert (stranger / "notes.txt").read_text() == "not a model"


class Crash(Exception):
    pass


def test_a_crashed_run_resumes_from_its_checkpoint_to_the_same_weights(
        world: dict, lora: object, tmp_path: Path, monkeypatch, capsys) -> None:
    module = _module("loop")

    out = tmp_path / "resumed"
    # An out_dir left unfinished (its weights lost) is replaced, not trusted.
    shutil.copytree(lora.path, out)
    (out / "adapter_model.safetensors").unlink()
    trainer = module.trainer_classes()[0]
    real_step, calls = trainer.training_step, []

    def crashing_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:           # steps 1-3 done, a checkpoint at step 2
            raise Crash()
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(trainer, "training_step", crashing_step)
    with pytest.raises(Crash):
        finetune_local(world["train"], out, _lora_settings(checkpoint_steps=2), progress=False)
    partial = tmp_path / ".resumed.finetune-partial"
    assert [p.name for p in (partial / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    assert not (out / "adapter_model.safetensors").exists()
    monkeypatch.setattr(trainer, "training_step", real_step)

    capsys.readouterr()
    model = finetune_local(world["train"], out, _lora_settings(checkpoint_steps=2), progress=True)
    assert "finetune: 6/6 steps (100%)" in capsys.readouterr().err
    assert model.record["resumed_from_step"] == 2 and not partial.exists()
    first = _tensors(lora.path, "adapter_model.safetensors")
    resumed = _tensors(out, "adapter_model.safetensors")
    assert first.keys() == resumed.keys() and all(first[k].equal(resumed[k]) for k in first)
    assert (out / "adapter_model.safetensors").read_bytes() == \
        (lora.path / "adapter_model.safetensors").read_bytes()
    assert model.record["losses"] == lora.record["losses"]


def test_a_lora_adapter_is_written_and_peft_loads_it(lora: object) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = lora
    assert model.adapter is True and model.record["output"]["adapter"] is True
    assert (model.path / "adapter_config.json").is_file() and not (model.path / "model.safetensors").exists()
    losses = [loss for _, loss in model.record["losses"]]
    assert losses[-1] < losses[0]
    config = json.loads((model.path / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == str(BASE.resolve())
    base = AutoModelForCausalLM.from_pretrained(BASE, local_files_only=True)
    loaded = PeftModel.from_pretrained(base, model.path, local_files_only=True)
    trained = {k: v for k, v in loaded.state_dict().items() if "lora_B" in k}
    assert trained and any(v.abs().sum() > 0 for v in trained.values())   # B starts at zero
    saved = _tensors(model.path, "adapter_model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in
               ((k.replace(".default", ""), v) for k, v in loaded.state_dict().items() if "lora_" in k))


@pytest.mark.parametrize("name, says", [
    ("gpt2", "looks like a hub id"),
    ("meta-llama/Llama-3.2-1B", "looks like a hub id"),
    ("/nowhere/model", "does not exist"),
])
def test_a_hub_id_or_a_missing_path_is_refused_offline(world: dict, tmp_path: Path, name: str,
                                                       says: str) -> None:
    settings = dataclasses.replace(_settings(), base_model=name)
    with pytest.raises(ConfigError, match=says) as caught:
        finetune_local(world["train"], tmp_path / "out", settings, progress=False)
    assert caught.value.key == "finetune.base_model" and repr(name) in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_model_without_a_chat_template_trains_on_the_plain_format(world: dict) -> None:
    from transformers import AutoTokenizer

    from refine import load_training

    module = _module("examples")
    tokenizer = AutoTokenizer.from_pretrained(BASE, local_files_only=True)
    tokenizer.chat_template = None
    pairs = load_training([world["train"]]).pairs
    template = module.chat_template(tokenizer, pairs)
    assert template == {"used": "fallback", "format": "{system}Q: {question}\nA: {answer}<eos>"}
    row = module.rows(pairs, template)[0]
    assert row == {"prompt": "You answer questions about widgets.\n\nQ: What colour is widget 0?\nA: ",
                   "completion": "Widget 0 is red."}


@pytest.mark.parametrize("field, value", [("lora_r", 0), ("lora_dropout", 1.0), ("epochs", 0),
                                          ("learning_rate", 0), ("device", "tpu"),
                                          ("target_modules", "c_attn"), ("base_model", "")])
def test_bad_settings_are_refused_with_their_key(field: str, value) -> None:
    with pytest.raises(ConfigError) as caught:
        dataclasses.replace(_settings(), **{field: value})
    assert caught.value.key == f"finetune.{field}"
