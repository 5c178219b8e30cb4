"""The gradient strategy (GrafS one-shot search) through `gpact run --strategy gradient`: its cells join the
front with origin `gradient` and stay in the template, the run folder keeps the mixture weights (alphas.png),
the same seed gives the same run, a run killed with SIGKILL resumes to the same result, and the supernets
never see an OOD input."""

import json
import signal

import pytest
import torch
from click.testing import CliRunner
from test_cli_runs import _generation, _same_front, _start_paused

from gpact.cli import main
from gpact.config import GradientConfig, RunConfig, TrainConfig
from gpact.expr.grammar import load_grammar
from gpact.expr.templates import conforms, get_template
from gpact.expr.trees import make_pset, parse_tree
from gpact.search.gradient import GradientSearch
from gpact.search.records import State
from gpact.train import oneshot
from gpact.train.tasks import make_suite

TINY = ["--strategy", "gradient", "--grammar", "grafs", "--generations", "1", "--seed", "3", "--tasks", "smoke",
        "--train-seeds", "1", "--steps", "5", "--width", "4", "--protocol", "fixed", "--validation", "",
        "--test", "", "--evaluator", "reference", "--restarts", "2", "--search-steps", "6", "--warm-steps", "2"]


@pytest.fixture(scope="module")
def reference(cli_run):
    """The uninterrupted gradient run the resumed ones must reproduce."""
    return cli_run(TINY)


def test_gradient_cells_join_the_front_with_their_origin_and_alphas_are_kept(reference):
    grammar = load_grammar("grafs")
    template, pset = get_template(grammar, "cell"), make_pset(grammar)
    rows = [json.loads(line) for line in (reference / "candidates.jsonl").read_text().splitlines()]
    assert rows and {r["origin"] for r in rows} == {"gradient"}
    for r in rows:  # every proposed cell is one of the template's (one alternative per slot)
        assert conforms(parse_tree(r["tree"], grammar, pset), template, grammar), r["tree"]
    front = (reference / "pareto.csv").read_text()
    assert ",gradient" in front
    logs = [json.loads(line) for line in (reference / "generations.jsonl").read_text().splitlines()]
    assert [g["generation"] for g in logs] == [0, 1]
    for g in logs:
        trace = g["alphas"]["trace"]
        assert len(g["alphas"]["cells"]) == 2 and trace[-1]["step"] == 5
        for slot, weights in trace[-1]["weights"].items():  # shrunk: one alternative per slot and restart
            assert len(weights) == 2 and all(sorted(w)[-1] == 1.0 and sum(w) == 1.0 for w in weights), slot
    assert (reference / "alphas.png").stat().st_size > 0


def test_same_seed_same_search_and_another_seed_another():
    """(A whole run with the same seed repeats byte for byte: the SIGKILL test below compares one with it.)"""
    cfg = RunConfig(gradient=GradientConfig(restarts=1, search_steps=3, warm_steps=1))
    tasks = make_suite("smoke", n_train=32, n_ood=8)
    grammar = load_grammar("grafs")
    template = get_template(grammar, "cell")
    a, b, c = (oneshot.search_cells(template, grammar, tasks, cfg.gradient, cfg.train, [s]) for s in (5, 5, 6))
    assert a.trace == b.trace and a.choices == b.choices and a.trace != c.trace


def test_sigkill_mid_generation_then_resume_gives_the_uninterrupted_result(reference, tmp_path):
    proc, _, run_dir = _start_paused(tmp_path, generation=1, args=TINY)
    assert _generation(run_dir) == 1  # generation 0 is checkpointed, 1 has trained its supernets
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    res = CliRunner().invoke(main, ["run", "--resume", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "resumed at generation 1" in res.output
    _same_front(run_dir, reference)


@pytest.mark.parametrize("split", ["nested", "random"])
def test_supernets_see_only_training_inputs_and_the_nested_band_is_the_box_edge(monkeypatch, split):
    seen = []
    forward = oneshot.network_forward

    def recording(params, x, act):
        seen.append(x.detach().clone())
        return forward(params, x, act)

    monkeypatch.setattr(oneshot, "network_forward", recording)
    grammar = load_grammar("grafs")
    tasks = make_suite("smoke", n_train=40, n_ood=40)
    cfg = RunConfig(grammar="grafs", train_seeds=1, train=TrainConfig(width=4, depth=1, steps=3),
                    gradient=GradientConfig(restarts=2, search_steps=3, warm_steps=2, split=split))
    strategy = GradientSearch(cfg, grammar, tasks, backend=_NoTraining())
    strategy.step(strategy.start(State()), State())
    assert seen
    train = [{tuple(r) for r in t.x_train.tolist()} for t in tasks]
    ood = [{tuple(r) for r in t.x_ood.tolist()} for t in tasks]
    arch = []
    for x in seen:  # [restarts * tasks, n, d]: network (r, t) sees task t's inputs only
        for p in range(x.shape[0]):
            rows = {tuple(r) for r in x[p, :, : tasks[p % 2].x_train.shape[1]].tolist()}
            assert rows <= train[p % 2] and not rows & ood[p % 2]
        if x.shape[1] == 10:  # the architecture split: a quarter of 40 points
            arch.append(x)
    assert arch
    if split == "nested":  # alpha's points are the ones farthest out in the training box
        x = tasks[0].x_train[:, 0]
        band = arch[0][0, :, 0]
        centre = (x.min() + x.max()) / 2
        inner = x[~torch.isin(x, band)]
        assert (band - centre).abs().min() >= (inner - centre).abs().max()


class _NoTraining:
    """A backend that scores without training: this test is about what the supernets see."""

    def evaluate(self, exprs, *args, **kwargs):
        from gpact.train.fitness import Fitness

        return [Fitness(1.0, 1.0, {}, 0, "", {}) for _ in exprs]


def test_a_grammar_without_one_run_template_is_refused_in_one_line_before_any_work(tmp_path):
    res = CliRunner().invoke(main, ["run", "--strategy", "gradient", "--grammar", "minimal", "--out", str(tmp_path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "gpact: " in res.output and "--strategy gradient needs a grammar" in res.output
    assert not list(tmp_path.iterdir())
