"""Benchmark: the whole loop on sample_data/generalise with its tiny LM, here and through `refine serve`.

1. ``local`` — recipes/retrain-local.yaml (edit mode; a full fine-tune of the tiny LM, 10 epochs)
   once per seed: collect → flag → cluster → emit → report → finetune_local at that seed → answer
   the eval set → collect → outcome, against a control retrain of the unmodified set at the same
   seed. BEFORE is collected on the first run (cold embedding cache) and resumed by the others.
   Per seed, judged as sample_data/make_generalising_sample.py judges the sample's own answers:
   ``defect_removed`` (planted-defect items whose answer no longer repeats the planted defect),
   ``correct`` (those now answered right), ``clean_bad_rate`` (items about clean facts answered
   wrong; the original model's in ``before``) — each for AFTER and its control side by side; and,
   by collect's grader, ``newly_bad`` (good before, bad now) of AFTER and of the control, with
   outcome's exact test on the items good before. Wall time per stage.
2. ``serve`` — the same recipe through a `refine serve` process on loopback (``retrain.base_url``):
   upload, a fine-tune job, the eval set answered by chat completions. The service trains with
   seed 0 (SeekrFlow's API takes no seed): ``same_answers_as_local`` is the share of its answers
   equal to the local seed-0 loop's. The official SDK (``chat.completions.create``, temperature 0,
   one request at a time) then asks the same questions: its agreement with refine's answers and
   both rates.
3. ``upload`` — one 100 MB JSONL file (10 MB with --small) to the same server, refine's
   ``upload`` and the SDK's ``files.upload`` in turn (A B B A), purpose ``pre-train`` (the server
   stores it: the transfer) and once each ``fine-tune`` (the server also reads every record).

Prints one JSON line; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "sample_data"
RECIPE = ROOT / "recipes" / "retrain-local.yaml"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _out import emit_json, stdout_to_stderr  # noqa: E402
from _synth import log  # noqa: E402


def _generaliser():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_generalising_sample", SAMPLE / "make_generalising_sample.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SAMPLE))
    spec.loader.exec_module(module)
    return module


class Judge:
    """The sample's own judge of an answer: good or bad, and whether it repeats a planted defect."""

    def __init__(self) -> None:
        self.gen = _generaliser()
        self.truth = json.loads((SAMPLE / "generalise" / "truth.json").read_text())["items"]
        self.world = self.gen.build_world(json.loads((SAMPLE / "generalise" / "truth.json").read_text())["seed"])
        self.questions = {f"g-{n:03d}": q for n, q in enumerate(self.world["questions"], start=1)}
        self.planted = [e for e, t in self.truth.items() if t["kind"] == "planted"]
        self.clean = [e for e, t in self.truth.items() if t["group"] is None]

    def __call__(self, answers: Path) -> dict:
        rows = {r["id"]: r["answer"] for r in map(json.loads, answers.read_text().splitlines())}
        verdict = {e: self.gen.judge(a, self.questions[e], self.world) for e, a in rows.items()}
        return {"defect_removed": _share(verdict[e][1] != "planted" for e in self.planted),
                "correct": _share(verdict[e][0] == "good" for e in self.planted),
                "clean_bad_rate": _share(verdict[e][0] == "bad" for e in self.clean)}


def _share(flags) -> float:
    flags = list(flags)
    return round(sum(flags) / len(flags), 3)


def _newly_bad(before: Path, run: Path) -> int:
    from refine import RunDir

    old = RunDir(before).items(["eval_id", "verdict"]).set_index("eval_id")["verdict"]
    new = RunDir(run).items(["eval_id", "verdict"]).set_index("eval_id")["verdict"]
    return int(((old == "good") & (new.reindex(old.index) == "bad")).sum())


def _rounded(seconds: dict) -> dict:
    return {k: round(v, 2) for k, v in seconds.items()}


def local_loop(root: Path, seeds: list[int], judge: Judge) -> dict:
    from refine import load_recipe, run_recipe

    runs = []
    before = root / "run"
    for seed in seeds:
        log(f"local loop, seed {seed} ...")
        recipe = load_recipe(RECIPE, [f"run_dir={before}", f"retrain.run_dir={root / f'after-s{seed}'}",
                                      f"retrain.finetune.seed={seed}", f"retrain.controls=[{seed}]"])
        started = time.perf_counter()
        result = run_recipe(recipe, progress=True)
        wall = time.perf_counter() - started
        retrained, control = result.retrain.after, result.retrain.controls[0]
        good_before = result.retrain.outcome.figures["vs_controls"]["good_before"]
        runs.append({
            "seed": seed, "after": judge(retrained.answers), "control": judge(control.answers),
            "newly_bad": result.retrain.outcome.newly_bad, "control_newly_bad": _newly_bad(before, control.run_dir),
            "good_before_test": {k: good_before[k] for k in ("after_bad", "control_bad_mean", "p_value", "direction")},
            "bad_before": result.retrain.outcome.figures["bad_before"],
            "bad_after": result.retrain.outcome.figures["bad_after"],
            "control_bad": result.retrain.outcome.figures["control_bad"][0],
            "wall_s": round(wall, 1), "stages_s": _rounded(result.seconds),
            "after_s": _rounded(retrained.seconds), "control_s": _rounded(control.seconds)})
        log(json.dumps(runs[-1]))
    summary = {}
    for arm in ("after", "control"):
        for key in ("defect_removed", "correct", "clean_bad_rate"):
            values = [r[arm][key] for r in runs]
            summary[f"{arm}_{key}"] = {"mean": round(sum(values) / len(values), 3), "min": min(values),
                                       "max": max(values)}
    for key in ("newly_bad", "control_newly_bad"):
        summary[key] = [r[key] for r in runs]
    return {"seeds": seeds, "summary": summary, "runs": runs}


def start_serve(root: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "refine.cli", "serve", "--port", "0", "--store", str(root / "store"),
                             "--base-model", str(SAMPLE / "generalise" / "tiny_lm"), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in proc.stdout:
        found = re.search(r" on (http://\S+) ", line)
        if found:
            # Drain what else it prints, so that a full pipe never stops it.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, found.group(1)
    raise RuntimeError("refine serve did not start")


def serve_loop(root: Path, url: str, judge: Judge, local_answers: Path | None, sdk_items: int) -> dict:
    from seekrai import SeekrFlow

    from refine import load_recipe, run_recipe

    log("the loop through refine serve ...")
    recipe = load_recipe(RECIPE, [f"run_dir={root / 'serve-run'}", f"retrain.run_dir={root / 'serve-after'}",
                                  f"retrain.base_url={url}", "retrain.finetune.base_model=tiny_lm",
                                  "retrain.controls=[]", "retrain.poll_interval=0.5"])
    started = time.perf_counter()
    result = run_recipe(recipe, progress=True)
    wall = time.perf_counter() - started
    retrained = result.retrain.after
    ours = [json.loads(line) for line in retrained.answers.read_text().splitlines()]
    out = {"after": judge(retrained.answers), "newly_bad": result.retrain.outcome.newly_bad,
           "wall_s": round(wall, 1), "stages_s": _rounded(result.seconds), "after_s": _rounded(retrained.seconds),
           "answers_per_s_refine": round(len(ours) / retrained.seconds["answer"], 1)}
    if local_answers is not None:
        theirs = {r["id"]: r["answer"] for r in map(json.loads, local_answers.read_text().splitlines())}
        out["same_answers_as_local"] = _share(r["answer"] == theirs[r["id"]] for r in ours)
    log(f"the official SDK asks {sdk_items} questions ...")
    asked = ours[:sdk_items]
    with SeekrFlow(api_key="local", base_url=url) as client:
        started = time.perf_counter()
        answers = [(client.chat.completions.create(
            model=retrained.model, max_tokens=96, temperature=0,
            messages=[{"role": "system", "content": r["system_prompt"]}, {"role": "user", "content": r["question"]}]
        ).choices[0].message.content or "").strip() or "(no answer)" for r in asked]
        sdk_s = time.perf_counter() - started
    out["sdk_items"] = len(asked)
    out["sdk_same_answers"] = _share(a == r["answer"] for a, r in zip(answers, asked))
    out["answers_per_s_sdk_sequential"] = round(len(asked) / sdk_s, 1)
    return out


def upload_throughput(root: Path, url: str, megabytes: int) -> dict:
    from seekrai import SeekrFlow

    from refine import upload

    path = root / "big.jsonl"
    lines = (SAMPLE / "generalise" / "train.jsonl").read_text().splitlines()
    with open(path, "w", encoding="utf-8") as fh:
        n = 0
        while fh.tell() < megabytes * 1_000_000:
            record = json.loads(lines[n % len(lines)])
            record["messages"][1]["content"] += f" (copy {n})"
            fh.write(json.dumps(record) + "\n")
            n += 1
    size = path.stat().st_size

    def refine_upload(purpose: str) -> float:
        started = time.perf_counter()
        upload(path, purpose=purpose, base_url=url, progress=False)
        return time.perf_counter() - started

    def sdk_upload(purpose: str) -> float:
        with SeekrFlow(api_key="local", base_url=url) as client:
            started = time.perf_counter()
            client.files.upload(path, purpose=purpose)
            return time.perf_counter() - started

    log(f"uploading {size / 1e6:.0f} MB: refine, SDK, SDK, refine ...")
    times = {"refine": [], "sdk": []}
    for who in ("refine", "sdk", "sdk", "refine"):
        times[who].append((refine_upload if who == "refine" else sdk_upload)("pre-train"))
    checked = {"refine": refine_upload("fine-tune"), "sdk": sdk_upload("fine-tune")}
    best = {who: min(t) for who, t in times.items()}
    return {"bytes": size, "refine_MB_per_s": round(size / 1e6 / best["refine"], 1),
            "sdk_MB_per_s": round(size / 1e6 / best["sdk"], 1),
            "refine_over_sdk_time": round(best["refine"] / best["sdk"], 3),
            "times_s": {who: [round(x, 2) for x in t] for who, t in times.items()},
            "fine_tune_purpose_s": {who: round(t, 2) for who, t in checked.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="one seed, 100 SDK questions, a 10 MB upload")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--skip", nargs="*", default=[], choices=["local", "serve", "upload"])
    args = parser.parse_args()
    seeds = [0] if args.small else args.seeds
    megabytes, sdk_items = (10, 100) if args.small else (100, 536)
    figures: dict = {"bench": "loop", "small": args.small, "recipe": str(RECIPE.relative_to(ROOT))}
    with stdout_to_stderr(), tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["REFINE_CACHE_DIR"] = str(root / "cache")      # cold, as a first run is
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        judge = Judge()
        figures["before"] = judge(SAMPLE / "generalise" / "eval.jsonl")
        started = time.perf_counter()
        local_answers = None
        if "local" not in args.skip:
            figures["local"] = local_loop(root, seeds, judge)
            if 0 in seeds:
                local_answers = root / "run" / "retrain" / "refined-s0" / "answers.jsonl"
        if "serve" not in args.skip or "upload" not in args.skip:
            server, url = start_serve(root)
            try:
                if "serve" not in args.skip:
                    figures["serve"] = serve_loop(root, url, judge, local_answers, sdk_items)
                if "upload" not in args.skip:
                    figures["upload"] = upload_throughput(root, url, megabytes)
            finally:
                server.terminate()
                server.wait()
        figures["wall_s"] = round(time.perf_counter() - started, 1)
    emit_json(figures)


if __name__ == "__main__":
    main()
