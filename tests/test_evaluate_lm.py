"""The language-model proxy: corpus and split, the model (plain and GLU at equal parameter
count), token-wise activations (MoA, PolyNorm), references in a fixed FFN form, the ladder on
loss against GELU, the stability probe on token inputs, and the mixture spaces."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest
import torch
from torch import nn

from afsearch.candidate import Candidate
from afsearch.compile.token import TokenSpec, compile_token, materialise
from afsearch.errors import ExpressionError, TaskError
from afsearch.evaluate import LadderConfig, evaluate, get_task, train
from afsearch.evaluate import baselines as bl
from afsearch.evaluate import corpus as corpus_mod
from afsearch.evaluate.lm import FeedForward, LMConfig, ffn_weights
from afsearch.reference import get_reference, reference_candidate
from afsearch.spaces import load_space

TINY = {"width": 12, "heads": 2, "layers": 1, "seq_len": 16, "corpus_bytes": 100_000, "eval_tokens": 512,
        "batch_size": 8}
MOA = json.dumps({"type": "moa", "terms": [["relu(x)", 0.25], ["x * sigmoid(x)", 0.75]]})


def tiny(**extra: object) -> dict[str, object]:
    return {**TINY, **extra}


def test_corpus_split_is_deterministic_disjoint_and_hashed() -> None:
    corpus = corpus_mod.load_corpus(200_000)
    again = corpus_mod.load_corpus(200_000)
    assert (corpus.train == again.train).all() and (corpus.val == again.val).all()
    assert len(corpus.train) + len(corpus.val) + len(corpus.test) == 200_000
    assert len(corpus.val) == len(corpus.test) == 2 * corpus_mod.BLOCK  # blocks 18 and 38 of 49
    assert len(corpus.sha256) == 64 and corpus.n_bytes > 1_000_000
    task = get_task("lm-transformer", tiny())
    assert task.config.corpus_sha256 == corpus.sha256  # recorded in every result's task config
    x, y = task.data.train.x, task.data.train.y
    assert x.dtype == torch.long and x.shape[1] == 16 and (x[:, 1:] == y[:, :-1]).all()


def test_a_missing_corpus_file_or_another_corpus_is_refused(tmp_path, monkeypatch) -> None:
    with pytest.raises(TaskError, match="corpus has sha256"):
        get_task("lm-transformer", tiny(corpus_sha256="0" * 64))
    corpus_mod.raw_bytes.cache_clear()
    monkeypatch.setattr(corpus_mod, "stdlib_dir", lambda: tmp_path)
    try:
        with pytest.raises(TaskError, match=r"standard-library file .*argparse.py, which is missing"):
            corpus_mod.raw_bytes()
    finally:
        monkeypatch.undo()
        corpus_mod.raw_bytes.cache_clear()


def test_bad_options_are_refused_in_one_line() -> None:
    with pytest.raises(TaskError, match="ffn must be one of plain, glu"):
        get_task("lm-transformer", tiny(ffn="moe"))
    with pytest.raises(TaskError, match="not divisible by heads"):
        get_task("lm-transformer", tiny(width=10, heads=4))
    with pytest.raises(TaskError, match="raise corpus_bytes"):
        get_task("lm-transformer", tiny(corpus_bytes=50_000))


@pytest.mark.parametrize("width, mult", [(96, 4), (12, 4), (64, 3)])
def test_glu_matches_the_plain_ffn_parameter_count(width: int, mult: int) -> None:
    """Hidden 4 * 96 = 384 -> GLU 256: 2 * 96 * 384 = 3 * 96 * 256 = 73,728 weights (exact
    whenever the plain hidden width is divisible by 3), and so the whole models match."""
    plain = FeedForward(width, mult * width, nn.GELU(), "plain")
    glu = FeedForward(width, LMConfig(width=width, ffn_mult=mult, heads=1, ffn="glu").hidden, nn.SiLU(), "glu")
    count = sum(p.numel() for p in plain.parameters())
    assert count == sum(p.numel() for p in glu.parameters()) == ffn_weights(width, mult * width, "glu")
    assert ffn_weights(96, 384, "plain") == 73_728
    models = [get_task("lm-transformer", tiny(ffn=f)).model(nn.GELU) for f in ("plain", "glu")]
    assert len({sum(p.numel() for p in m.parameters()) for m in models}) == 1


def test_the_model_is_causal_and_learns_bytes() -> None:
    task = get_task("lm-transformer", tiny())
    torch.manual_seed(0)
    model = task.model(nn.GELU).eval()
    x = task.data.val.x[:2]
    out = model(x)
    assert out.shape == (2, 256, 16)
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 256
    assert torch.allclose(model(changed)[:, :, :10], out[:, :, :10])  # the future is not seen
    recipe = dataclasses.replace(task.recipe, steps=60, warmup=5)
    result = train(lambda: task.model(nn.GELU), task.data, recipe, seed=0)
    assert result.val_loss < math.log(256) - 1.0  # well below uniform over bytes


def test_moa_starts_as_the_mixture_and_learns_a_token_gate() -> None:
    cls = compile_token(MOA)
    act = cls()
    h = torch.randn(3, 5, 8)
    materialise(act, h)
    expected = 0.25 * torch.relu(h) + 0.75 * h * torch.sigmoid(h)
    assert torch.allclose(act(h), expected, atol=1e-6)  # gate weight 0: the initial LA
    assert act.gate.weight.shape == (2, 8)
    act(h).pow(2).sum().backward()
    assert act.gate.weight.grad is not None and act.gate.weight.grad.abs().sum() > 0
    spec = TokenSpec.from_json(MOA)
    reordered = TokenSpec.from_json(json.dumps({"type": "moa", "terms": [["silu(x)", 3.0], ["relu(x)", 1.0]]}))
    assert spec.fingerprint() == reordered.fingerprint()  # same functions, same initial mixture
    with pytest.raises(ExpressionError, match="positive initial weight"):
        TokenSpec.from_json(json.dumps({"type": "moa", "terms": [["relu(x)", -1]]}))


def test_polynorm_normalises_each_power_over_the_hidden_vector() -> None:
    act = reference_candidate("polynorm").activation_factory()()
    h = torch.randn(4, 6, dtype=torch.float64)
    act = act.double()

    def norm(u: torch.Tensor) -> torch.Tensor:
        return u / torch.sqrt(u.pow(2).mean(-1, keepdim=True) + 1e-6)

    assert torch.allclose(act(h), (norm(h) + norm(h**2) + norm(h**3)) / 3)


def test_references_fix_their_ffn_form_and_train_at_equal_parameters() -> None:
    assert reference_candidate("swiglu").task_overrides() == {"ffn": "glu"}
    assert get_reference("gelu@plain").ffn == "plain" and reference_candidate("gelu").kind == "activation"
    with pytest.raises(ExpressionError, match="FFN form must be one of"):
        get_reference("gelu@moe")
    assert reference_candidate("swiglu").fingerprint() != Candidate.activation("x * sigmoid(x)").fingerprint()
    plain = evaluate(reference_candidate("gelu"), "lm-transformer", budget=10, task_config=tiny(), ladder=False)
    swiglu = evaluate(reference_candidate("swiglu"), "lm-transformer", budget=10, task_config=tiny(), ladder=False)
    same = evaluate("x * sigmoid(x)", "lm-transformer", budget=10, task_config=tiny(ffn="glu"), ladder=False)
    assert plain.ok and swiglu.ok and plain.params == swiglu.params
    assert swiglu.value == same.value  # SwiGLU on a plain run is SiLU on a glu run
    wrong = evaluate(reference_candidate("swiglu"), "mnist1d-mlp", budget=5)
    assert wrong.status == "failed" and "has no option ffn" in wrong.reason


def test_quality_gate_compares_loss_with_gelu_at_the_same_step() -> None:
    task = get_task("lm-transformer", tiny())
    cfg = LadderConfig(quality_step=10, quality_ratio=1.0)
    recipe = dataclasses.replace(task.recipe, steps=20)
    gelu_at_10 = bl.reference_value_at(task, recipe, 0, 10)
    for formula in ("gelu(x)", "sin(3 * x)"):
        result = evaluate(formula, task, budget=20, ladder=cfg)
        gate = next(s for s in result.stages if s.name == "quality")
        assert gate.stats["gelu_loss"] == gelu_at_10
        assert gate.stats["threshold"] == gelu_at_10  # ratio 1: as good as GELU, lower is better
        assert gate.passed == (gate.stats["val_loss"] <= gelu_at_10)
        if not gate.passed:
            assert result.status == "rejected" and "> " in (gate.reason or "") and "GELU" in (gate.reason or "")
    assert evaluate("gelu(x)", task, budget=20, ladder=cfg).ok  # GELU itself meets its own bar


def test_stability_burst_runs_on_token_inputs() -> None:
    result = evaluate(Candidate.token(MOA), "lm-transformer", budget=60, task_config=tiny(),
                      ladder={"quality": False})
    burst = next(s for s in result.stages if s.name == "stability")
    # the constant prediction of next bytes: the entropy of the byte distribution
    assert burst.passed and burst.steps == LadderConfig().burst_steps(60)
    assert 0 < burst.stats["val_loss"] < math.inf and 0 < burst.stats["constant_loss"] < math.log(256)
    blown = evaluate("exp(exp(x))", "lm-transformer", budget=5, task_config=tiny(),
                     ladder={"quality": False, "screen": False, "stability_bound": 1.0})
    assert blown.status == "rejected" and blown.stage == "stability"


@pytest.mark.parametrize("space_name, kind", [("la", "activation"), ("moa", "token")])
def test_mixture_spaces_propose_valid_members(space_name: str, kind: str) -> None:
    space = load_space(space_name)
    rng = random.Random(0)
    genotypes = space.seeds() + [space.sample(rng) for _ in range(20)]
    for g in list(genotypes):
        child = space.mutate(g, rng)
        assert child != g
        genotypes += [child, *space.crossover(g, child, rng)]
    for g in genotypes:
        cand = space.to_candidate(g)
        assert cand.kind == kind and 2 <= len(space.terms(g)) <= 4
        cand.fingerprint()
    seed = space.to_candidate(space.seeds()[0])
    if kind == "activation":  # LA: one trainable weight per term and per layer
        assert seed.spec == "alpha1[0.5] * gelu(x) + alpha2[0.5] * silu(x)"
        model = get_task("lm-transformer", tiny(layers=2)).model(seed.activation_factory())
        weights = [p for n, p in model.named_parameters() if n.endswith("act.alpha1")]
        assert len(weights) == 2 and weights[0] is not weights[1]
    else:  # MoA: the genotype is the token-wise spec itself
        assert json.loads(seed.spec) == space.seeds()[0]
