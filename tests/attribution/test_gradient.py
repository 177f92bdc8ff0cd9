"""The gradient backend: culprits first, faithful projections, determinism, the answer-only loss."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from refine import ConfigError, load_eval, load_training, make_backend

from ..conftest import CITIES, POISONED, SAMPLE, chat, people_dataset, write_jsonl

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _tiny_lm_module():
    spec = importlib.util.spec_from_file_location("make_tiny_lm", SAMPLE / "make_tiny_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The people dataset and a small GPT-2 trained on it from scratch (a few seconds)."""
    root = tmp_path_factory.mktemp("gradient")
    data = people_dataset(root / "data", n_people=40)
    # Polite rewordings of clean questions teach the model that "Please tell me." changes
    # nothing, so it repeats the poison for the reworded eval questions too.
    variants = write_jsonl(root / "data" / "variants.jsonl", [
        chat(f"Where does person{i} live? Please tell me.", f"Person{i} lives in {CITIES[i % 10]}.")
        for i in range(0, 40, 2) if i not in POISONED])
    data["train"] = [str(data["train"]), str(variants)]
    pairs = load_training(data["train"]).unique_pairs()
    examples = [(p.question, p.answer, p.system_prompt) for p in pairs]
    lm = _tiny_lm_module()
    tokenizer = lm.train_tokenizer([t for q, a, _ in examples for t in (q, a)], vocab_size=300)
    model = lm.train_model(tokenizer, examples, n_layer=2, n_embd=64, n_head=2, epochs=60,
                           question_noise=0.3, batch_size=8, lr=5e-3, max_length=64)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    says = {item.question: lm.generate(model, tokenizer, item.question, max_new_tokens=24)
            for item in load_eval(str(data["eval"])).items if item.verdict == "bad"}
    return {**data, "model": str(root / "model"), "root": root, "says": says}


def _backend(world: dict, cache: Path, **options):
    options = {"model": world["model"], "projection_dim": 1024, "cache_dir": str(cache), **options}
    return make_backend("gradient", options, top_k=5)


def _prepared(world: dict, cache: Path, **options):
    backend = _backend(world, cache, **options)
    backend.prepare(load_training(world["train"]), lambda desc, total: (lambda n: None))
    return backend


@pytest.mark.parametrize("preconditioner", ["layerwise", "trak", "identity", "cosine"])
def test_each_poisoned_answer_the_model_gives_cites_its_culprit_first(
        world: dict, tmp_path: Path, preconditioner: str) -> None:
    backend = _prepared(world, tmp_path, preconditioner=preconditioner)
    # Only the answers this model really gives: it repeats the poison, so its culprit caused it.
    items = [i for i in load_eval(str(world["eval"])).items
             if i.verdict == "bad" and world["says"][i.question] == i.answer]
    assert len(items) >= 3
    assert any(i.id.endswith("-1") for i in items)      # a reworded question, not a training one
    for record, item in zip(backend.attribute(items), items):
        person = item.id.split("-")[0][1:]
        top = record.influences[0]
        culprit = f"Q: Where does person{person} live?\nA: Person{person} lives in Atlantis."
        assert top.messages == culprit
        if preconditioner in ("layerwise", "trak"):   # the culprit also stands out of the crowd
            assert top.influence_level in ("high", "medium")
        scores = [inf.score for inf in record.influences]
        assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)


def _exact_gradients(world: dict, examples: list[tuple[str, str]],
                     measurement: str = "margin") -> list[dict[str, "torch.Tensor"]]:
    """Full per-example gradients w.r.t. every block weight matrix of the mean over answer
    tokens of -log p (``loss``) or of -log(p / (1 - p)) (``margin``), by autograd."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from refine.attribution.gradient import encode_example

    tokenizer = AutoTokenizer.from_pretrained(world["model"])
    model = AutoModelForCausalLM.from_pretrained(world["model"]).eval()
    out = []
    for question, answer in examples:
        ids, labels = encode_example(tokenizer, question, answer)
        model.zero_grad()
        # float64 from the logits on: 1 - p is exact even where p rounds to 1 in float32.
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
        targets = torch.tensor(labels[1:])
        keep = targets != -100
        log_p = torch.log_softmax(logits[keep], dim=-1).gather(1, targets[keep, None])[:, 0]
        value = -log_p if measurement == "loss" else -(log_p - torch.log(-torch.expm1(log_p)))
        value.mean().backward()
        out.append({name: p.grad.clone() for name, p in model.named_parameters()
                    if name.endswith(".weight") and p.dim() == 2 and ".h." in name})
    return out


EXAMPLES = [("Where does person6 live?", "Person6 lives in Atlantis."),
            ("Where does person1 live?", "Person1 lives in Paris."),
            ("Where does person16 live?", "Person16 lives in Paris.")]


@pytest.mark.parametrize("measurement", ["margin", "loss"])
def test_features_are_the_exact_gradients_projected(world: dict, tmp_path: Path,
                                                    measurement: str) -> None:
    backend = _backend(world, tmp_path, measurement=measurement)
    features = backend.features([(q, a, None) for q, a in EXAMPLES])
    _, _, projector = backend._load()
    for grads, feature in zip(_exact_gradients(world, EXAMPLES, measurement), features):
        expected = []
        for (name, _, _, _, conv), p_in, p_out in zip(projector.layers, projector.p_in,
                                                      projector.p_out):
            grad = grads[name + ".weight"]
            grad = grad.T if conv else grad            # Conv1D keeps its weight as (in, out)
            expected.append((p_out.T @ grad @ p_in).reshape(-1))
        np.testing.assert_allclose(feature, torch.cat(expected).numpy(), rtol=1e-3, atol=1e-6)


def test_projected_inner_products_estimate_the_exact_ones(world: dict, tmp_path: Path) -> None:
    backend = _backend(world, tmp_path, projection_dim=8192)
    features = backend.features([(q, a, None) for q, a in EXAMPLES]).astype(np.float64)
    _, _, projector = backend._load()
    k_in, k_out = min(k for _, k in projector.shapes), min(k for k, _ in projector.shapes)
    # Kronecker-Gaussian sketch: the cosine's standard error is about sqrt(2(1/k_in + 1/k_out)).
    tolerance = 4 * math.sqrt(2 * (1 / k_in + 1 / k_out))
    exact = np.stack([torch.cat([g.reshape(-1) for g in grads.values()]).numpy()
                      for grads in _exact_gradients(world, EXAMPLES)]).astype(np.float64)

    def cosines(x: np.ndarray) -> np.ndarray:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T

    assert np.abs(cosines(features) - cosines(exact)).max() < tolerance
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), np.linalg.norm(exact, axis=1),
                               rtol=tolerance)


def test_features_are_identical_across_runs_with_the_same_seed(world: dict, tmp_path: Path) -> None:
    examples = [(q, a, None) for q, a in EXAMPLES]
    first = _backend(world, tmp_path / "a", seed=3).features(examples)
    second = _backend(world, tmp_path / "b", seed=3).features(examples)
    other = _backend(world, tmp_path / "c", seed=4).features(examples)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


def test_training_features_are_cached_and_reused(world: dict, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = _prepared(world, tmp_path)
    again = _backend(world, tmp_path)
    monkeypatch.setattr(again, "features", lambda examples: pytest.fail("recomputed"))
    again.prepare(load_training(world["train"]), lambda desc, total: (lambda n: None))
    np.testing.assert_array_equal(np.load(first._train.path), np.load(again._train.path))


def test_the_loss_covers_only_the_answer_tokens(world: dict) -> None:
    from transformers import AutoTokenizer

    from refine.attribution.gradient import encode_example

    tokenizer = AutoTokenizer.from_pretrained(world["model"])
    ids, labels = encode_example(tokenizer, "Where does person3 live?", "Person3 lives in Lima.",
                                 "Be brief.")
    answer = [i for i, label in enumerate(labels) if label != -100]
    assert answer == list(range(answer[0], len(ids)))        # one run, at the end
    assert [ids[i] for i in answer] == [labels[i] for i in answer]
    assert tokenizer.decode([ids[i] for i in answer]) == "Person3 lives in Lima.<|end|>"
    assert "Be brief." in tokenizer.decode(ids[:answer[0]])
    assert "Person3 lives" not in tokenizer.decode(ids[:answer[0]])

    tokenizer.chat_template = None                           # a base model: the plain fallback
    ids, labels = encode_example(tokenizer, "Where?", "Here.", fallback="Q: {question}\nA: ")
    first = next(i for i, label in enumerate(labels) if label != -100)
    assert tokenizer.decode(ids[:first]) == "Q: Where?\nA: "
    assert tokenizer.decode(ids[first:]) == "Here.<|end|>"


def test_a_missing_model_or_adapter_support_is_a_config_error(world: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="never fetched from a hub"):
        make_backend("gradient", {"model": "gpt2"}, top_k=5)
    with pytest.raises(ConfigError, match="required"):
        make_backend("gradient", {}, top_k=5)
    with pytest.raises(ConfigError, match="preconditioner"):
        make_backend("gradient", {"model": world["model"], "preconditioner": "ekfac"}, top_k=5)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="it looks like an adapter"):
        make_backend("gradient", {"model": str(tmp_path / "adapter")}, top_k=5)
    with pytest.raises(ConfigError, match="not a local PEFT adapter directory"):
        make_backend("gradient", {"model": world["model"], "adapter": world["model"]}, top_k=5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "peft", None)          # as if peft were not installed
        with pytest.raises(ConfigError, match="pip install peft"):
            make_backend("gradient", {"model": world["model"], "adapter": str(tmp_path / "adapter")},
                         top_k=5)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="cannot load the model"):
        make_backend("gradient", {"model": str(tmp_path / "broken")}, top_k=5).features(
            [("Where?", "Here.", None)])


def test_an_interrupted_preparation_resumes_where_it_stopped(world: dict, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from refine.attribution.gradient import backend

    monkeypatch.setattr(backend, "_CHUNK", 16)
    training = load_training(world["train"])
    broken = _backend(world, tmp_path / "cache", whiten="none")   # only the feature pass here
    real, calls = broken.features, []

    def crash_on_second_chunk(examples):
        calls.append(len(examples))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(examples)

    monkeypatch.setattr(broken, "features", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        broken.prepare(training, lambda desc, total: (lambda n: None))

    resumed = _backend(world, tmp_path / "cache", whiten="none")
    done: list[int] = []
    seen = resumed.features
    monkeypatch.setattr(resumed, "features",
                        lambda examples: done.append(len(examples)) or seen(examples))
    resumed.prepare(training, lambda desc, total: (lambda n: None))
    assert sum(done) == len(training.unique_pairs()) - 16
    fresh = _prepared(world, tmp_path / "fresh", whiten="none")
    np.testing.assert_allclose(np.load(resumed._train.path), np.load(fresh._train.path),
                               rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def lora_adapter(world: dict) -> str:
    """A LoRA adapter fine-tuned for a few steps on the world's training data."""
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from refine.attribution.gradient import encode_example

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(world["model"])
    base = AutoModelForCausalLM.from_pretrained(world["model"])
    model = peft.get_peft_model(base, peft.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn", "c_fc"],
        fan_in_fan_out=True))
    pairs = load_training(world["train"]).unique_pairs()
    encoded = [encode_example(tokenizer, p.question, p.answer) for p in pairs]
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for step in range(20):
        for ids, labels in encoded[step % 4::8]:
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
            loss.backward()
        optim.step()
        optim.zero_grad()
    path = world["root"] / "adapter"
    model.save_pretrained(path)
    return str(path)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")   # peft's, not ours
def test_with_a_lora_adapter_only_the_adapter_weights_are_differentiated(
        world: dict, lora_adapter: str, tmp_path: Path) -> None:
    backend = _prepared(world, tmp_path, adapter=lora_adapter)
    _, _, projector = backend._load()
    names = [name for name, *_ in projector.layers]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert any("c_attn" in n for n in names) and any("c_fc" in n for n in names)
    # The adapter is part of the cache key: base-model features are never reused for it.
    assert backend.cache_path(backend._pairs) != _backend(world, tmp_path).cache_path(backend._pairs)

    items = [i for i in load_eval(str(world["eval"])).items
             if i.verdict == "bad" and world["says"][i.question] == i.answer]
    assert items
    for row, item in zip(backend.scores(items), items):
        # A rank-4 adapter's gradients carry less than the full model's: a reworded question
        # may rank other pairs above its culprit, but a poisoned pair stays in the top 3.
        ranked = [backend._pairs[j] for j in np.argsort(-row, kind="stable")]
        assert any(p.answer.endswith("lives in Atlantis.") for p in ranked[:3])
        if item.id.endswith("-0"):     # the training question itself: its own culprit first
            person = item.id.split("-")[0][1:]
            assert ranked[0].question == f"Where does person{person} live?"


@pytest.mark.parametrize("preconditioner,relative,projection_dim", [
    ("layerwise", True, 1024), ("layerwise", False, 1024), ("trak", True, 1024),
    ("trak", False, 1024), ("identity", False, 1024), ("cosine", False, 1024),
    # fewer columns per layer than training pairs: λ_l follows D_l, not N
    ("layerwise", True, 256)])
def test_scores_match_the_formula_computed_densely(world: dict, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   preconditioner: str, relative: bool,
                                                   projection_dim: int) -> None:
    from refine.attribution.gradient import backend as gradient_backend

    monkeypatch.setattr(gradient_backend, "_SCORE_CHUNK", 7)       # many blocks, a short last one
    backend = _prepared(world, tmp_path, preconditioner=preconditioner, relative=relative,
                        damping=0.5, projection_dim=projection_dim)
    items = load_eval(str(world["eval"])).items[:5]
    got = backend.scores(items)

    phi = np.load(backend._train.path).astype(np.float64)
    q = backend.features([(i.question, i.answer, i.system_prompt) for i in items]).astype(np.float64)
    if preconditioner in ("layerwise", "trak"):
        # trak: one (ΦᵀΦ + λI)⁻¹ over all columns; layerwise: the block-diagonal matrix of
        # each layer's own, each layer damped by its own mean eigenvalue.
        sizes = [k_out * k_in for k_out, k_in in backend._load()[2].shapes]
        assert sum(sizes) == phi.shape[1] and len(sizes) > 1
        assert (max(sizes) < len(phi)) == (projection_dim == 256)
        edges = np.cumsum([0, *sizes]) if preconditioner == "layerwise" else [0, phi.shape[1]]
        inverse = np.zeros((phi.shape[1],) * 2)
        for lo, hi in zip(edges[:-1], edges[1:]):
            gram = phi[:, lo:hi].T @ phi[:, lo:hi]
            lam = 0.5 * np.trace(gram) / min(len(phi), hi - lo)
            inverse[lo:hi, lo:hi] = np.linalg.inv(gram + lam * np.eye(hi - lo))
        want = q @ inverse @ phi.T
        if relative:
            want /= np.sqrt(np.einsum("ij,jk,ik->i", phi, inverse, phi))
    elif preconditioner == "identity":
        want = q @ phi.T
    else:
        want = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ \
            (phi / np.linalg.norm(phi, axis=1, keepdims=True)).T
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9 * np.abs(want).max())


def test_the_cache_follows_exact_texts_and_feature_settings_only(world: dict, tmp_path: Path) -> None:
    pairs = load_training(world["train"]).unique_pairs()
    key = _backend(world, tmp_path).cache_path(pairs)
    assert _backend(world, tmp_path, damping=3.0, preconditioner="cosine", batch_size=3,
                    relative=False).cache_path(pairs) == key
    assert _backend(world, tmp_path, projection_dim=512).cache_path(pairs) != key
    assert _backend(world, tmp_path, measurement="loss").cache_path(pairs) != key
    recased = [pairs[0].__class__(**{**pairs[0].__dict__, "answer": pairs[0].answer.lower()}),
               *pairs[1:]]
    assert recased[0].pair_id == pairs[0].pair_id          # same pair for refine...
    assert _backend(world, tmp_path).cache_path(recased) != key   # ...not the same gradient


def test_a_damaged_feature_cache_is_recomputed_not_trusted(world: dict, tmp_path: Path) -> None:
    first = _prepared(world, tmp_path)
    reference = np.load(first._train.path)
    path = first._train.path
    with open(path, "r+b") as fh:                            # a torn write: half the matrix
        fh.truncate(path.stat().st_size // 2)
    again = _prepared(world, tmp_path)
    np.testing.assert_array_equal(np.load(again._train.path), reference)


def test_a_damaged_curvature_cache_is_recomputed_not_trusted(world: dict, tmp_path: Path) -> None:
    items = load_eval(str(world["eval"])).items[:4]
    reference = _prepared(world, tmp_path, preconditioner="layerwise").scores(items)
    (gram,) = (tmp_path / "gradients").glob("*/gram-layerwise.npz")
    gram.write_bytes(gram.read_bytes()[:100])                # a torn file
    np.testing.assert_array_equal(_prepared(world, tmp_path, preconditioner="layerwise").scores(items), reference)
    with np.load(gram) as saved:                             # the right shapes, wrong numbers
        shapes = [saved[name].shape for name in saved.files]
    with open(gram, "wb") as fh:
        np.savez(fh, *[np.full(shape, np.nan) for shape in shapes])
    np.testing.assert_array_equal(_prepared(world, tmp_path, preconditioner="layerwise").scores(items), reference)
    with open(gram, "wb") as fh:                             # one block short
        np.savez(fh, *[np.eye(shape[0]) for shape in shapes[1:]])
    np.testing.assert_array_equal(_prepared(world, tmp_path, preconditioner="layerwise").scores(items), reference)
    np.save(gram.with_suffix(".npy"), np.eye(3))             # not an archive at all
    gram.with_suffix(".npy").replace(gram)
    np.testing.assert_array_equal(_prepared(world, tmp_path, preconditioner="layerwise").scores(items), reference)


def test_the_curvature_is_computed_once_and_then_read_from_the_cache(
        world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scipy.linalg.blas

    items = load_eval(str(world["eval"])).items[:4]
    reference = _prepared(world, tmp_path).scores(items)

    def no_accumulation(*args, **kwargs):
        raise AssertionError("the Gram blocks were accumulated again")
    monkeypatch.setattr(scipy.linalg.blas, "dsyrk", no_accumulation)
    np.testing.assert_array_equal(_prepared(world, tmp_path).scores(items), reference)


# --- stronger scores: whitened projections, the eval set in the curvature, contrastive queries ---


@pytest.mark.parametrize("options", [{"whiten": "kfac"}, {"whiten": "diag", "eval_mix": 0.5,
                                                       "preconditioner": "layerwise"},
                                     {"contrast": 1.0, "preconditioner": "cosine"},
                                     {"whiten": "kfac", "contrast": 1.0, "preconditioner": "cosine"}],
                         ids=["kfac", "trackstar-style", "contrast", "kfac-contrast"])
def test_every_scoring_variant_still_cites_each_culprit_first(world: dict, tmp_path: Path,
                                                              options: dict) -> None:
    backend = _prepared(world, tmp_path, **options)
    evalset = load_eval(str(world["eval"])).items
    backend.prepare_queries(evalset, lambda desc, total: (lambda n: None))
    items = [i for i in evalset if i.verdict == "bad" and world["says"][i.question] == i.answer]
    for record, item in zip(backend.attribute(items), items):
        person = item.id.split("-")[0][1:]
        assert record.influences[0].messages == \
            f"Q: Where does person{person} live?\nA: Person{person} lives in Atlantis."


def test_kfac_whitening_is_the_inverse_root_of_the_token_second_moments(world: dict, tmp_path: Path) -> None:
    """The whitening folded into a layer's input projection is (A + λ mean(eig) I)^{-1/2} for A
    the mean outer product of that layer's inputs over every real token of the training pairs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from refine.attribution.gradient import encode_example

    plain = _backend(world, tmp_path / "plain")
    whitened = _prepared(world, tmp_path / "kfac", whiten="kfac", whiten_damping=0.1)
    name, _, n_in, _, _ = whitened._load()[2].layers[0]
    tokenizer = AutoTokenizer.from_pretrained(world["model"])
    model = AutoModelForCausalLM.from_pretrained(world["model"]).eval()
    module = dict(model.named_modules())[name]
    seen = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(args[0][0].detach().double()))
    with torch.no_grad():
        for pair in load_training(world["train"]).unique_pairs():
            ids, _ = encode_example(tokenizer, pair.question, pair.answer, pair.system_prompt)
            model(input_ids=torch.tensor([ids]))
    handle.remove()
    tokens = torch.cat(seen)
    moment = tokens.T @ tokens / len(tokens)
    values, vectors = torch.linalg.eigh(moment)
    values = values.clamp(min=0)
    root = (vectors * (values + 0.1 * values.mean()).rsqrt()) @ vectors.T
    p_plain, p_white = plain._load()[2].p_in[0].double(), whitened._load()[2].p_in[0].double()
    np.testing.assert_allclose((root @ p_plain).numpy(), p_white.numpy(), rtol=2e-3, atol=2e-4)


def test_a_contrastive_query_is_less_the_mean_of_its_nearest_good_answers(world: dict, tmp_path: Path) -> None:
    backend = _prepared(world, tmp_path, contrast=1.0, contrast_neighbours=3)
    items = [i for i in load_eval(str(world["eval"])).items if i.answer]
    backend.prepare_queries(items, lambda desc, total: (lambda n: None))
    raw = backend.features([(i.question, i.answer, i.system_prompt) for i in items]).astype(np.float64)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    good = np.array([i.verdict == "good" for i in items])
    for row in (0, len(items) // 2, len(items) - 1):
        similarity = np.where(good, unit @ unit[row], -np.inf)
        similarity[row] = -np.inf
        nearest = np.argsort(-similarity, kind="stable")[:3]
        expected = raw[row] - raw[nearest].mean(axis=0)
        item = items[row]
        got = backend._query_features[(item.question, item.answer, item.system_prompt)]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_whitening_factors_are_cached_and_a_torn_file_is_recomputed(world: dict, tmp_path: Path) -> None:
    first = _prepared(world, tmp_path, whiten="diag")
    path = next(tmp_path.rglob("whiten-diag.npz"))
    again = _prepared(world, tmp_path, whiten="diag")
    np.testing.assert_array_equal(first._load()[2].p_in[0].numpy(), again._load()[2].p_in[0].numpy())
    path.write_bytes(path.read_bytes()[:40])
    healed = _prepared(world, tmp_path, whiten="diag")
    np.testing.assert_allclose(first._load()[2].p_in[0].numpy(), healed._load()[2].p_in[0].numpy(), rtol=1e-6)


@pytest.mark.parametrize("options,words", [({"whiten": "svd"}, "whiten"), ({"eval_mix": 1.5}, "eval_mix"),
                                           ({"contrast": -1}, "contrast"),
                                           ({"eval_mix": 0.5, "preconditioner": "cosine"}, "eval_mix")])
def test_bad_scoring_options_are_config_errors(world: dict, tmp_path: Path, options: dict, words: str) -> None:
    from refine.executors.inprocess import InProcessExecutor

    # Options are checked when built; the device where the model is loaded: in this process,
    # once collect hands the backend its (in-process) executor, before anything is written.
    with pytest.raises(ConfigError, match=words):
        _backend(world, tmp_path, **options).use_executor(InProcessExecutor())


# --- devices and precision ---------------------------------------------------------------------


def test_bfloat16_weights_rank_as_float32_does(world: dict, tmp_path: Path) -> None:
    """The model in bfloat16, projections and features in float32: the same best pair for
    every answer, and (measured) ≥ 80% of the top 5 in common."""
    items = [i for i in load_eval(str(world["eval"])).items if i.answer]
    scores = {}
    for dtype in ("float32", "bfloat16"):
        backend = _prepared(world, tmp_path / dtype, dtype=dtype)
        backend.prepare_queries(items, lambda desc, total: (lambda n: None))
        scores[dtype] = backend.scores(items)
    full, half = scores["float32"], scores["bfloat16"]
    assert (full.argmax(axis=1) == half.argmax(axis=1)).all()
    overlap = [len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5])) / 5 for a, b in zip(full, half)]
    assert np.mean(overlap) >= 0.8


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible here")
@pytest.mark.parametrize("options,words", [({"device": "cuda"}, "no CUDA GPU is visible"),
                                           ({"device": "cuda:1"}, "no CUDA GPU is visible"),
                                           ({"device": "cpu", "dtype": "float16"}, "float16 needs a GPU"),
                                           ({"device": "tpu"}, "expected one of auto, cpu, cuda, mps"),
                                           ({"dtype": "int8"}, "expected one of float32, bfloat16")])
def test_a_device_or_dtype_that_cannot_be_had_is_a_clear_error(world: dict, tmp_path: Path,
                                                                options: dict, words: str) -> None:
    from refine.executors.inprocess import InProcessExecutor

    # Options are checked when built; the device where the model is loaded: in this process,
    # once collect hands the backend its (in-process) executor, before anything is written.
    with pytest.raises(ConfigError, match=words):
        _backend(world, tmp_path, **options).use_executor(InProcessExecutor())


def test_auto_picks_the_cpu_here_and_a_batch_size_for_it(world: dict, tmp_path: Path) -> None:
    backend = _backend(world, tmp_path, device="auto", batch_size="auto")
    assert backend.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert backend._batch == (64 if torch.cuda.is_available() else 16)
    assert "device" not in backend.settings()["options"] and backend.settings()["options"]["dtype"] == "float32"


def test_collect_on_a_gpu_this_machine_lacks_writes_nothing(world: dict, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from refine.cli import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["collect", "--backend", "gradient", "--model", world["model"],
                                       "--option", "device=cuda", "--train", world["train"][0],
                                       "--eval", str(world["eval"]), "--out", str(run), "-q"])
    assert result.exit_code == 2 and "'backend_options.device': is 'cuda', but no CUDA GPU" in result.output
    assert not run.exists()


def test_the_package_keeps_the_names_older_code_imports() -> None:
    import refine.attribution.gradient as gradient
    from refine.attribution.base import backend_class

    assert gradient.__all__ == sorted(gradient.__all__)
    assert set(gradient.__all__) == {"DEFAULT_FALLBACK", "GradientBackend", "GradientOptions",
                                     "encode_example", "gradient_worker", "prompt_text"}
    assert all(hasattr(gradient, name) for name in gradient.__all__)
    assert backend_class("gradient") is gradient.GradientBackend     # the plug-in entry point
