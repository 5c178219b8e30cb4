"""Command line: thin click commands that parse options, call one library function and print.

Every GpactError (bad grammar, formula, config, run folder) and every OSError (a full disk, a read-only
folder) becomes one line on stderr and exit status 2; Ctrl-C before a command handles it, one line and 130.
Nothing heavy (torch, sympy) is imported at the top, so a Ctrl-C while it loads lands in these handlers.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

import click

from gpact.config import (
    EVOLVE,
    MIXTURES,
    OBJECTIVES,
    SPLITS,
    STRATEGIES,
    GradientConfig,
    LLMConfig,
    ProtocolDist,
    RunConfig,
    TrainConfig,
)
from gpact.errors import GpactError

if TYPE_CHECKING:
    from gpact.run.estimate import StartEstimate

TASKS_HELP = ("Comma-separated task suites, task names (library ones too: rational/3, feynman/I.12.4), "
              "seeded draws across families (random:N or random:N@SEED) or of a family split's part "
              "(search:N, validation:N, test:N, optionally @SEED); see docs/tasks.md.")


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GpactError as exc:
            click.echo(f"gpact: error: {_one_line(str(exc))}", err=True)
            sys.exit(2)
        except OSError as exc:  # the file system said no (a full disk, a read-only or missing folder)
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"gpact: error: {exc.strerror or exc}{where}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:  # Ctrl-C before a command's own handlers are in place (imports, a checkpoint)
            click.echo("gpact: interrupted", err=True)
            sys.exit(130)


def _one_line(message: str, limit: int = 1000) -> str:
    """An error as one line of bounded length, whatever input it quotes (a formula, a file's line)."""
    message = " ".join(message.splitlines())
    return message if len(message) <= limit else f"{message[:limit // 2]} ... {message[-limit // 2:]}"


@click.group(cls=_Group)
@click.version_option(package_name="gpact")
def main() -> None:
    """gpact: genetic-programming search for activation functions, scored out of distribution."""


# Commands are added below, one function each; keep them thin.


@main.command()
@click.option("--grammar", "-g", default="grammars/full.yaml", show_default=True,
              help="Grammar file, or the name of a shipped one (full, minimal, ...).")
@click.option("--generations", type=int, default=RunConfig.generations, show_default=True,
              help="Generations after the initial population (on --resume: the new total).")
@click.option("--strategy", type=click.Choice(list(STRATEGIES)), default=RunConfig.strategy, show_default=True,
              help="How the next candidates are chosen: gp (NSGA-II over trees); gradient (GrafS supernets over the "
                   "grammar's template, e.g. --grammar grafs: README 'Gradient strategy'); surrogate (train the "
                   "best-predicted functions of the grammar's template space; AQuaSurF); random (train uniformly "
                   "random functions of the grammar's templates, the baseline; with --max-evals N).")
@click.option("--evolve", type=click.Choice(list(EVOLVE)), default=RunConfig.evolve, show_default=True,
              help="What a tree is: the activation, or its derivative (scored as its integral, f(0) = 0; trees "
                   "sympy cannot integrate in closed form in the time box are rejected, counted by reason).")
@click.option("--integrate-seconds", type=float, default=RunConfig.integrate_seconds, show_default=True,
              help="--evolve derivative: sympy's time box per integral.")
@click.option("--time-limit", default="0", show_default=True,
              help="Stop at the first generation boundary after this wall time (90s, 30m, 2h); 0: none.")
@click.option("--max-evals", type=int, default=RunConfig.max_evals, show_default=True,
              help="Stop at the first generation boundary after training this many functions; 0: none.")
@click.option("--resume", "resume", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this folder from its checkpoint; other options given change its config "
                   "(only limits, device and evaluator may differ).")
@click.option("--population", type=int, default=RunConfig.population, show_default=True,
              help="Rounded up to a multiple of 4.")
@click.option("--seed", type=int, default=RunConfig.seed, show_default=True)
@click.option("--tasks", default=RunConfig.tasks, show_default=True,
              help="The search tasks (selected on): 'search:N' draws N tasks of the run's search families "
                   "(docs/tasks.md); or " + TASKS_HELP[0].lower() + TASKS_HELP[1:])
@click.option("--train-seeds", type=int, default=RunConfig.train_seeds, show_default=True,
              help="Network initialisations per task (the score takes their median).")
@click.option("--protocol", type=click.Choice(["random", "fixed"]), default="random", show_default=True,
              help="random: each (task, seed) network draws width, depth, steps and lr from the run's distribution "
                   "(docs/design.md §5); fixed: all train alike. --width/--depth/--steps/--lr given pin theirs.")
@click.option("--steps", type=int, default=None, help="Training steps per network [default: random: "
              f"{'/'.join(map(str, ProtocolDist.steps))}; fixed: {RunConfig().train.steps}].")
@click.option("--width", type=int, default=None, help="Hidden width of the MLPs [default: random: "
              f"{'/'.join(map(str, ProtocolDist.widths))}; fixed: {RunConfig().train.width}].")
@click.option("--depth", type=int, default=None, help="Hidden layers of the MLPs [default: random: "
              f"{'/'.join(map(str, ProtocolDist.depths))}; fixed: {RunConfig().train.depth}].")
@click.option("--lr", type=float, default=None, help="Adam learning rate [default: random: "
              f"{'/'.join(map(str, ProtocolDist.lrs))}; fixed: {RunConfig().train.lr}].")
@click.option("--evaluator", type=click.Choice(["auto", "reference", "batched"]), default="auto", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--validation", default=RunConfig.validation, show_default=True,
              help="Tasks that pick the recommended function among the front (never searched on); '' to skip. "
                   "'validation:N' draws N tasks of the run's validation families.")
@click.option("--test", default=RunConfig.test, show_default=True,
              help="Tasks the front is reported on and nothing is selected on; '' to skip. 'test:N' draws N "
                   "tasks of the run's test families.")
@click.option("--race-eta", type=int, default=RunConfig.race_eta, show_default=True,
              help="Racing: the best 1/ETA of a generation's new functions at each stage train on ETA times more "
                   "networks; 1: every function trains on every network.")
@click.option("--race-start", type=int, default=RunConfig.race_start, show_default=True,
              help="Racing: networks (task, seed) each new function trains on first.")
@click.option("--prescreen", type=int, default=RunConfig.prescreen, show_default=True,
              help="gp: make K times the children and train the surrogate's predicted best share (plus a few random "
                   "ones); 0: off.")
@click.option("--max-networks", type=int, default=RunConfig.max_networks, show_default=True,
              help="Stop at the first generation boundary after the search trained this many networks; 0: none.")
@click.option("--objective", type=click.Choice(list(OBJECTIVES)), default=RunConfig.objective, show_default=True,
              help="tail: ratio to GELU with a tail term for the worst quarter of networks; geomean: geometric mean "
                   "OOD loss (gpact before 0.2).")
@click.option("--out", "out_dir", default=RunConfig.out_dir, show_default=True, help="Folder for run folders.")
@click.option("--run-id", default="", help="Name of the run folder [default: date-grammar-seed].")
@click.option("--llm-base-url", default=None, help="OpenAI-compatible server for LLM crossover, e.g. "
              "http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama). See docs/llm.md.")
@click.option("--llm-model", default=None, help="Model name as the server knows it.")
@click.option("--llm-api-key-env", default=LLMConfig.api_key_env, show_default=True,
              help="Environment variable holding the API key (local servers need none).")
@click.option("--llm-rate", type=float, default=LLMConfig.rate, show_default=True,
              help="Probability that a crossover is done by the LLM.")
@click.option("--llm-mutation-rate", type=float, default=LLMConfig.mutation_rate, show_default=True,
              help="Probability that a mutation is done by the LLM.")
@click.option("--llm-max-calls", type=int, default=LLMConfig.max_calls, show_default=True,
              help="LLM requests per run, cached ones included.")
@click.option("--llm-timeout", type=float, default=LLMConfig.timeout, show_default=True,
              help="Seconds per LLM request (no retries).")
@click.option("--backend", type=click.Choice(["serial", "process", "ray"]), default="serial", show_default=True,
              help="Where candidates train: this process, local worker processes, or Ray (docs/scaleout.md).")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Worker processes / Ray actors; 0: one per GPU, else one per CPU core.")
@click.option("--ray-address", default="", help="Ray cluster to join ('auto' or host:port) [default: start a "
              "local Ray].")
@click.option("--chunk-timeout", type=float, default=0.0, show_default=True,
              help="Seconds a worker may spend on one chunk before it is replaced and the chunk re-run; 0: no limit.")
@click.option("--restarts", type=int, default=GradientConfig.restarts, show_default=True,
              help="Gradient strategy: supernets per generation, trained as one batch.")
@click.option("--search-steps", type=int, default=GradientConfig.search_steps, show_default=True,
              help="Gradient strategy: alternating architecture/weight step pairs per supernet.")
@click.option("--warm-steps", type=int, default=GradientConfig.warm_steps, show_default=True,
              help="Gradient strategy: weight steps with the base activation first.")
@click.option("--mixture", type=click.Choice(list(MIXTURES)), default=GradientConfig.mixture, show_default=True,
              help="Gradient strategy: dirichlet (DrNAS) or softmax (DARTS) slot mixtures.")
@click.option("--split", type=click.Choice(list(SPLITS)), default=GradientConfig.split, show_default=True,
              help="Gradient strategy: nested (alpha on the outer band of the training box) or random.")
@click.option("--trainable-constants", is_flag=True,
              help="Ephemeral constants become trainable, p(c): each network learns them per layer; the score is "
                   "after training them, and the front shows the learned values.")
@click.option("--const-lr", type=float, default=None,
              help="Adam learning rate of trainable constants, p(c); 0 keeps them at their start values "
                   "[default: each network's own lr].")
def run(grammar, generations, time_limit, max_evals, resume, population, seed, tasks, train_seeds, steps, width,
        evaluator, device, validation, test, race_eta, race_start, max_networks, prescreen, objective, out_dir,
        run_id,
        llm_base_url, llm_model, llm_api_key_env, llm_rate, llm_mutation_rate, llm_max_calls, llm_timeout, backend,
        workers, ray_address, chunk_timeout, strategy, protocol, depth, lr, evolve, integrate_seconds, restarts,
        search_steps, warm_steps, mixture, split,
        trainable_constants, const_lr):
    """Search for activation functions; print and save the Pareto front (OOD score vs FLOPs).

    Ctrl-C (or SIGTERM) finishes the current generation, writes the checkpoint and exits with 130 (143);
    a second one abandons the generation. `gpact run --resume runs/<id>` continues.
    """
    from gpact.run.estimate import check_population
    from gpact.run.stopping import parse_duration

    if resume:
        from gpact.run.runner import run as run_search

        result = run_search(_resume_config(click.get_current_context(), resume), echo=click.echo, resume=resume)
        sys.exit(result.exit_code)
    train, dist = _training(protocol, width=width, depth=depth, steps=steps, lr=lr)
    train = dataclasses.replace(train, const_lr=const_lr)
    cfg = RunConfig(grammar=grammar, generations=generations, time_limit=parse_duration(time_limit),
                    max_evals=max_evals, population=population, seed=seed, tasks=tasks,
                    train_seeds=train_seeds, train=train, evaluator=evaluator, device=device, validation=validation,
                    test=test, objective=objective, race_eta=race_eta, race_start=race_start,
                    max_networks=max_networks, prescreen=prescreen,
                    out_dir=out_dir, run_id=run_id,
                    llm=LLMConfig(base_url=llm_base_url, model=llm_model, api_key_env=llm_api_key_env, rate=llm_rate,
                                  mutation_rate=llm_mutation_rate, max_calls=llm_max_calls, timeout=llm_timeout),
                    backend=backend, workers=workers, ray_address=ray_address, chunk_timeout=chunk_timeout,
                    strategy=strategy, evolve=evolve, integrate_seconds=integrate_seconds,
                    gradient=GradientConfig(restarts=restarts, search_steps=search_steps, warm_steps=warm_steps,
                                            mixture=mixture, split=split),
                    trainable_constants=trainable_constants)
    cfg = dataclasses.replace(cfg, protocol=dist)
    _announce(check_population(cfg.mu), cfg.mu)  # before the runner's imports: a refusal is at once
    from gpact.run.runner import run as run_search

    sys.exit(run_search(cfg, echo=click.echo).exit_code)


def _announce(est: StartEstimate, population: int) -> None:
    """A line before a long, silent initial population (gpact.run.estimate)."""
    from gpact.run.estimate import ANNOUNCE_SECONDS

    if est.seconds > ANNOUNCE_SECONDS:
        click.echo(f"gpact: building the initial population of {population} functions: {est.describe()}")


def _training(choice: str, **pins) -> tuple[TrainConfig, ProtocolDist]:
    """The run's TrainConfig and protocol distribution; a pin given (width=32) fixes that field for all networks."""
    given = {k: v for k, v in pins.items() if v is not None}
    dist = ProtocolDist() if choice == "random" else ProtocolDist.fixed()
    fields = {"width": "widths", "depth": "depths", "steps": "steps", "lr": "lrs"}
    return (dataclasses.replace(RunConfig().train, **given),
            dataclasses.replace(dist, **{fields[k]: () for k in given}))  # (): the TrainConfig's value


# `gpact run` options whose config key differs from the option name; the rest map one to one.
_CONFIG_KEYS = {"steps": "train.steps", "width": "train.width", "depth": "train.depth", "lr": "train.lr",
                "const_lr": "train.const_lr",
                "out_dir": "out_dir",
                **{k: f"gradient.{k}" for k in ("restarts", "search_steps", "warm_steps", "mixture", "split")},
                **{f"llm_{k}": f"llm.{k}" for k in ("base_url", "model", "api_key_env", "rate", "mutation_rate",
                                                     "max_calls", "timeout")}}


def _resume_config(ctx: click.Context, run_dir: str) -> RunConfig:
    """The run's saved config, changed by the options given on this command line (not by defaults)."""
    from click.core import ParameterSource

    from gpact.run.checkpoint import resume_config
    from gpact.run.stopping import parse_duration

    overrides = {}
    for name, value in ctx.params.items():
        if name == "resume" or ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        overrides[_CONFIG_KEYS.get(name, name)] = parse_duration(value) if name == "time_limit" else value
        if name == "protocol":
            overrides[name] = dataclasses.asdict(_training(value)[1])
    return resume_config(run_dir, overrides)


@main.command(name="show")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--no-plots", is_flag=True, help="Don't draw missing plots.")
def show_cmd(run_dir, no_plots):
    """Summary, Pareto front and plots of the run in RUN_DIR (runs/<id>)."""
    from gpact.report.show import show_run

    click.echo(show_run(run_dir, plots=not no_plots))


@main.command(name="list")
@click.argument("root", type=click.Path(file_okay=False), default="runs")
def list_cmd(root):
    """Runs under ROOT (default runs/): date, grammar, generations, evaluations, best score, status."""
    from gpact.report.show import format_list, list_runs

    click.echo(format_list(list_runs(root)))


@main.command(name="export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--rank", "-k", type=int, default=None,
              help="Front member (1: best search score) [default: the run's recommended function, else 1].")
@click.option("--format", "fmt", type=click.Choice(["torch", "python", "sympy", "latex"]), default="torch",
              show_default=True, help="torch/python: a .py file with an nn.Module that imports only torch.")
@click.option("--trainable", is_flag=True, help="torch/python: constants as trainable nn.Parameters.")
@click.option("--constants", "start", type=click.Choice(["learned", "formula"]), default="learned",
              show_default=True, help="Where trainable constants, p(c), start: the medians the run's networks "
                                      "learned, or the formula's values c.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="File to write [default: RUN_DIR/export/rank<K>.py for torch/python; stdout otherwise].")
def export_cmd(run_dir, rank, fmt, trainable, start, out_path):
    """Export a front member of the run in RUN_DIR (its recommended function unless --rank is given) as torch
    module source, sympy or LaTeX."""
    from pathlib import Path

    from gpact.report.export import default_path, export, front_member
    from gpact.run.rundir import write_text

    member = front_member(run_dir, rank)
    text = export(member, fmt, trainable=trainable, start=start)
    if out_path is None and fmt in ("sympy", "latex"):
        click.echo(text, nl=False)
        return
    path = Path(out_path) if out_path else default_path(member, fmt)
    write_text(path, text)
    what = f"rank {member.rank}" if member.rank else "the run recommends GELU itself; --rank K for a front member"
    click.echo(f"wrote {path}  ({what}: {member.formula})")


@main.command(name="integrate")
@click.argument("gradient")
@click.option("--grammar", "-g", default="full", show_default=True,
              help="Grammar whose primitives the gradient may name (sigmoid, softplus, ...); exp, log, max, min, "
                   "abs, heaviside and the other registry functions mean themselves.")
@click.option("--seconds", type=float, default=None, help="Time box for sympy [default: 5].")
def integrate_cmd(gradient, grammar, seconds):
    """Integrate a designed derivative GRADIENT (max, min, abs, heaviside make pieces) into an activation with
    f(0) = 0, and print it with its FLOPs, ready for `gpact eval` (design by integration, as xIELU).

    Example: gpact integrate "1.6*max(x, 0) + 0.8*(exp(min(x, 0)) - 1) + 0.5"
    """
    from gpact.expr.grammar import load_grammar
    from gpact.expr.integrate import INTEGRATE_SECONDS, integrate_formula
    from gpact.expr.symbolic import display

    if seconds is not None and not 0 < seconds <= 3600:
        raise click.BadParameter("must be in (0, 3600] seconds", param_hint="--seconds")
    result = integrate_formula(gradient, load_grammar(grammar), seconds or INTEGRATE_SECONDS)
    click.echo(f"derivative  {display(result.derivative)}")
    click.echo(f"activation  {result.formula}")
    click.echo(f"FLOPs       {result.flops:g}")
    click.echo(f'score it:   gpact eval "{result.formula}" --grammar {grammar}')


# ---------------------------------------------------------------------------------------------------------
# Scoring fixed formulas, known activations, template spaces, transfer to real data


def _score_options(f):
    """Options shared by `gpact eval` and `gpact baselines`."""
    D = TrainConfig()  # gpact.train.mlp.DEFAULT_CONFIG, without importing torch

    opts = [
        click.option("--tasks", default="default", show_default=True, help=TASKS_HELP),
        click.option("--seeds", type=int, default=5, show_default=True, help="Network initialisations per task."),
        click.option("--width", type=int, default=D.width, show_default=True, help="Hidden width of the MLPs."),
        click.option("--depth", type=int, default=D.depth, show_default=True, help="Hidden layers."),
        click.option("--steps", type=int, default=D.steps, show_default=True, help="Training steps per network."),
        click.option("--lr", type=float, default=D.lr, show_default=True, help="Adam learning rate."),
        click.option("--const-lr", type=float, default=None,
                     help="Adam learning rate of trainable constants, p(c); 0 keeps them at their start values "
                          "[default: --lr]."),
        click.option("--evaluator", type=click.Choice(["auto", "reference", "batched"]), default="auto",
                     show_default=True),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--jobs", type=int, default=1, show_default=True,
                     help="Worker processes (one seed each); same numbers as 1."),
        click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
                     help="Also write the table, with per-seed and per-task scores, as CSV."),
        click.option("--markdown", is_flag=True, help="Print the table as GitHub markdown."),
        click.option("--per-task", is_flag=True, help="Also print each task's loss relative to GELU."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _score_and_print(items, grammar, tasks, seeds, width, depth, steps, lr, const_lr, evaluator, device, jobs,
                     csv_path, markdown, per_task, sort):
    from gpact.config import TrainConfig
    from gpact.report.scores import format_per_task, format_table, to_csv
    from gpact.train.scoring import score_formulas

    def progress(done: int, total: int) -> None:
        click.echo(f"seed {done}/{total} done", err=True)

    cfg = TrainConfig(width=width, depth=depth, steps=steps, lr=lr, const_lr=const_lr)
    table = score_formulas(items, grammar=grammar, tasks=tasks, seeds=seeds, cfg=cfg, evaluator=evaluator,
                           device=device, jobs=jobs, progress=progress)
    click.echo(format_table(table, sort=sort, markdown=markdown))
    if per_task:
        click.echo("\n" + format_per_task(table, sort=sort, markdown=markdown))
    if csv_path:
        with open(csv_path, "w") as fh:
            fh.write(to_csv(table))


@main.command(name="eval")
@click.argument("formulas", nargs=-1)
@click.option("--file", "-f", "formula_file", type=click.File(encoding="utf-8", errors="replace"), default=None,
              help="Read formulas from a file, one per line ('#' comments), e.g. from `gpact enumerate --out`.")
@click.option("--grammar", "-g", default="full", show_default=True, help="Grammar the formulas are written in.")
@click.option("--trainable-constants", is_flag=True,
              help="Also score each formula with its constants trained per layer (p(c)), beside the fixed form.")
@_score_options
def eval_(formulas, formula_file, grammar, trainable_constants, tasks, seeds, width, depth, steps, lr, const_lr,
          evaluator, device, jobs, csv_path, markdown, per_task):
    """Score FORMULAS (or baseline names such as gmtu) on the task suite, against GELU, over seeds.

    Example: gpact eval "gelu(x) + 0.1*sin(x)" gmtu --seeds 5
    """
    items = list(formulas)
    if formula_file is not None:
        items += [line.strip() for line in formula_file if line.strip() and not line.lstrip().startswith("#")]
    if not items:
        raise click.UsageError("give at least one formula (or --file)")
    if trainable_constants:
        from gpact.train.baselines import with_trainable

        items = [item for text in items for item in with_trainable(text)]
    _score_and_print(items, grammar, tasks, seeds, width, depth, steps, lr, const_lr, evaluator, device, jobs,
                     csv_path, markdown, per_task, sort=False)


@main.command(name="baselines")
@click.option("--only", default=None, help="Comma-separated baseline names [default: all].")
@_score_options
def baselines_cmd(only, tasks, seeds, width, depth, steps, lr, const_lr, evaluator, device, jobs, csv_path, markdown,
                  per_task):
    """Score the library of known activations (gpact/baselines.py), best first relative to GELU."""
    from gpact.train.baselines import BASELINE_GRAMMAR, BASELINES, get

    names = [get(n.strip()).name for n in only.split(",")] if only else list(BASELINES)
    _score_and_print(names, BASELINE_GRAMMAR, tasks, seeds, width, depth, steps, lr, const_lr, evaluator, device,
                     jobs, csv_path, markdown, per_task, sort=True)


_T = RunConfig().train  # crossval trains as the search does


@main.command(name="crossval")
@click.argument("formulas", nargs=-1, required=True)
@click.option("--families", default="", help="Comma-separated families (split units) [default: all 14].")
@click.option("--per-family", type=int, default=5, show_default=True, help="Tasks drawn per family.")
@click.option("--seeds", type=int, default=5, show_default=True, help="Network initialisations per task.")
@click.option("--task-seed", type=int, default=0, show_default=True, help="Seed of the task draw.")
@click.option("--width", type=int, default=_T.width, show_default=True, help="Hidden width of the MLPs.")
@click.option("--depth", type=int, default=_T.depth, show_default=True, help="Hidden layers.")
@click.option("--steps", type=int, default=_T.steps, show_default=True, help="Training steps per network.")
@click.option("--lr", type=float, default=_T.lr, show_default=True, help="Adam learning rate.")
@click.option("--evaluator", type=click.Choice(["auto", "reference", "batched"]), default="auto", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Also write every (formula, family, seed) log-ratio as CSV.")
@click.option("--markdown", is_flag=True, help="Print the table as GitHub markdown.")
def crossval_cmd(formulas, families, per_family, seeds, task_seed, width, depth, steps, lr, evaluator, device,
                 csv_path, markdown):
    """Ratio of FORMULAS (or baseline names) to GELU on each task family held out on its own, over seeds.

    Example: gpact crossval gelu_sine gmtu "x*sigmoid(2*x)" --families rational,damped,feynman-III
    """
    import time

    from gpact.config import TrainConfig
    from gpact.report.crossval import format_table, to_csv
    from gpact.train.crossval import crossval
    from gpact.train.library import UNITS

    units = [u.strip() for u in families.split(",") if u.strip()] if families else list(UNITS)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        click.echo(f"seed {done}/{total} done ({time.perf_counter() - start:.0f} s)", err=True)

    cfg = TrainConfig(width=width, depth=depth, steps=steps, lr=lr)
    table = crossval(formulas, units=units, per_family=per_family, seeds=seeds, cfg=cfg, task_seed=task_seed,
                     evaluator=evaluator, device=device, progress=progress)
    click.echo(format_table(table, markdown=markdown))
    if csv_path:
        with open(csv_path, "w") as fh:
            fh.write(to_csv(table))


@main.command(name="enumerate")
@click.option("--grammar", "-g", required=True, help="Grammar with templates, e.g. aquasurf, grafs, swish.")
@click.option("--template", "-t", default=None, help="Template name [default: the grammar's only template].")
@click.option("--points", type=int, default=1000, show_default=True,
              help="Random inputs, N(0,1) clipped to [-5, 5], on which outputs are compared.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write one formula per distinct function, one per line (input for `gpact eval -f`).")
def enumerate_cmd(grammar, template, points, seed, out_path):
    """Enumerate every expression of a template; count names and distinct functions (by outputs)."""
    from gpact.expr.grammar import load_grammar
    from gpact.expr.templates import count_distinct, describe_enumeration, pick_template

    g = load_grammar(grammar)
    t = pick_template(g, template)
    result = count_distinct(t, g, points=points, seed=seed, formulas=out_path is not None)
    click.echo(describe_enumeration(result, t, g))
    if out_path:
        with open(out_path, "w") as fh:
            fh.write("".join(f + "\n" for f in result.formulas))
        click.echo(f"wrote {len(result.formulas)} formulas to {out_path}")


@main.command(name="transfer")
@click.argument("formulas", nargs=-1, required=True)
@click.option("--dataset", "-d", default=None,
              help="Tabular: breast_cancer, wine, digits, diabetes; comma-separated, or 'all'.")
@click.option("--task", "-t", default=None,
              help="Shift task: digits-shift (CNN, moved digits), chars (character GPT-2, other modules' "
                   "docstrings), length (addition, longer numbers); comma-separated, or 'all'.")
@click.option("--seeds", type=int, default=None, help="Network initialisations [default: 5 tabular, 3 tasks].")
@click.option("--grammar", "-g", default="full", show_default=True, help="Grammar the formulas are written in.")
@click.option("--width", type=int, default=None, help="Hidden width [default: 64 tabular; per task].")
@click.option("--depth", type=int, default=None, help="Hidden layers, tabular [default: 2].")
@click.option("--steps", type=int, default=None, help="Adam steps [default: 300 tabular; per task].")
@click.option("--lr", type=float, default=None, help="Adam learning rate [default: 3e-3 tabular; per task].")
@click.option("--batch", type=int, default=None, help="Minibatch size of a task [default: per task].")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other field of a task's config, e.g. --set test_length=16 (repeatable).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where a task trains (auto: CUDA when there is one).")
@click.option("--markdown", is_flag=True, help="Print the tables as GitHub markdown.")
def transfer_cmd(formulas, dataset, task, seeds, grammar, width, depth, steps, lr, batch, settings, device, markdown):
    """Train networks with FORMULAS, GELU and ReLU under a shift between training and test data: small MLPs
    on a real tabular dataset (bundled with scikit-learn; --dataset), or a CNN, a character-level GPT-2 and a
    recurrent network on shift tasks (--task). No downloads."""
    from gpact.errors import ConfigError
    from gpact.report.transfer import DATASETS, TransferConfig, format_result, transfer

    if (dataset is None) == (task is None):
        raise ConfigError("give --dataset (tabular) or --task (digits-shift, chars, length), not both")
    if dataset is not None:
        if batch is not None or settings or device != "auto":
            raise ConfigError("--batch, --set and --device are for --task")
        names = list(DATASETS) if dataset == "all" else [d.strip() for d in dataset.split(",")]
        D = TransferConfig()
        cfg = TransferConfig(width=D.width if width is None else width, depth=D.depth if depth is None else depth,
                             steps=D.steps if steps is None else steps, lr=D.lr if lr is None else lr)
        for i, name in enumerate(names):
            result = transfer(list(formulas), name, seeds=5 if seeds is None else seeds, cfg=cfg, grammar=grammar)
            click.echo(("\n" if i else "") + format_result(result, markdown=markdown))
        return
    from gpact.report.transfer_tasks import parse_settings, run_task, task_config, tasks

    if depth is not None:
        raise ConfigError("--depth is for --dataset; a task's model size is --width (and --set layers=N for chars)")
    names = list(tasks()) if task == "all" else [t.strip() for t in task.split(",")]
    for i, name in enumerate(names):
        cfg = task_config(name, width=width, steps=steps, lr=lr, batch=batch, **parse_settings(name, settings))
        result = run_task(list(formulas), name, seeds=3 if seeds is None else seeds, cfg=cfg, grammar=grammar,
                          device=device, progress=lambda line: click.echo(line, err=True))
        click.echo(("\n" if i else "") + format_result(result, markdown=markdown))


@main.command(name="bench")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--candidates", "-k", type=int, default=64, show_default=True,
              help="Candidates trained (known activations, then random trees).")
@click.option("--setting", type=click.Choice(["protocol", "search"]), default="protocol", show_default=True,
              help="protocol: MLP 1-64-64-1, 500 steps, 512 points, one task; search: 8 search tasks x 2 seeds, "
                   "width 16, 200 steps, 256 points.")
@click.option("--steps", type=int, default=None, help="Adam steps per training [default: the setting's].")
@click.option("--naive-max", type=int, default=64, show_default=True,
              help="Time the reference evaluator on at most this many of the candidates.")
@click.option("--kernel", type=click.Choice(["auto", "loop", "torch", "triton"]), default="auto", show_default=True,
              help="Activation interpreter of the batched evaluator (auto: loop on CPU, triton on CUDA).")
@click.option("--repeat", type=int, default=1, show_default=True,
              help="Runs in this one process; figures are medians, the JSON keeps every run's speed-up (with "
                   "--gradient: timed pairs).")
@click.option("--naive-threads", type=int, default=None,
              help="torch threads for the reference evaluator's runs [default: torch's]; 1 shows how much a loaded "
                   "machine's waits at intra-op barriers inflate the speed-up.")
@click.option("--roofline", is_flag=True,
              help="Instead: measured peaks, the evaluator as a fraction of them, the shared-GELU ceiling and "
                   "a per-phase breakdown of one step (no reference run).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--gradient", is_flag=True, help="Instead: one restart of the gradient strategy (default tasks, "
              "network and GradientConfig) against ordinary trainings of the same networks, in turns.")
@click.option("--restarts", type=int, default=1, show_default=True, help="With --gradient: supernets per search.")
@click.option("--surrogate", is_flag=True,
              help="Instead: replay searches on the shipped table of scored aquasurf functions (no training).")
@click.option("--seeds", type=int, default=20, show_default=True, help="--surrogate: replays per search order.")
@click.option("--batch", type=int, default=8, show_default=True, help="--surrogate: functions per surrogate batch.")
@click.option("--model", type=click.Choice(["knn", "umap"]), default="knn", show_default=True,
              help="--surrogate: the surrogate model (umap needs gpact[surrogate]).")
@click.option("--gp-cap", type=int, default=300, show_default=True,
              help="--surrogate: evaluations a GP replay may use; 0 skips the GP replays.")
@click.option("--gp-seeds", type=int, default=0, show_default=True,
              help="--surrogate: GP replays (each costs sympy work per tree); 0: --seeds.")
@click.option("--limit", type=int, default=0, show_default=True,
              help="--surrogate: only the table's first N functions (a quick check); 0: all.")
def bench_cmd(device, candidates, setting, steps, naive_max, kernel, repeat, naive_threads, roofline, as_json, gradient,
              restarts, surrogate, seeds, batch, model, gp_cap, gp_seeds, limit):
    """Trainings per second: the reference evaluator (one network at a time) against the batched one,
    on the reference protocol (MLP 1-64-64-1, Adam lr 1e-2, 512 points, y = sin(3x) + x^2) or the search
    setting. With --surrogate: evaluations the surrogate, random order and GP need on the replay table."""
    import json

    from gpact.errors import ConfigError
    from gpact.report.bench import run_bench, run_gradient_bench

    if surrogate:
        from gpact.report.replay import format_replay, run_replay

        r = run_replay(seeds, batch, model, gp_cap, limit=limit, with_gp=gp_cap > 0, gp_seeds=gp_seeds,
                       echo=lambda s: click.echo(s, err=True))
        click.echo(json.dumps(r.to_dict()) if as_json else format_replay(r))
        return

    if gradient:
        if restarts < 1 or repeat < 1:
            raise ConfigError("--restarts and --repeat must be >= 1")
        g = run_gradient_bench(restarts, repeat, device, echo=lambda s: click.echo(s, err=True))
        if as_json:
            click.echo(json.dumps(g.to_dict()))
            return
        click.echo(f"device {g.device}, {g.tasks} tasks, {g.restarts} restart(s) stacked, warm {g.warm_steps} + "
                   f"search {g.search_steps} steps; ordinary training: {g.steps} steps, width {g.width} "
                   f"depth {g.depth}")
        click.echo("search, wall / CPU (s):            " + "  ".join(
            f"{w:.1f}/{c:.1f}" for w, c in zip(g.search_seconds, g.search_cpu, strict=True)))
        click.echo("ordinary training, wall / CPU (s): " + "  ".join(
            f"{w:.2f}/{c:.2f}" for w, c in zip(g.training_seconds, g.training_cpu, strict=True)))
        click.echo(f"one restart = {g.median_ratio:.1f} ordinary trainings in CPU time (median; "
                   f"{min(g.ratios):.1f}-{max(g.ratios):.1f} over {len(g.ratios)} pairs)")
        return

    if candidates < 1 or naive_max < 1 or repeat < 1 or any(v is not None and v < 1 for v in (steps, naive_threads)):
        raise ConfigError("--candidates, --steps, --naive-max, --naive-threads and --repeat must be >= 1")
    echo = lambda s: click.echo(s, err=True)  # noqa: E731
    if roofline:
        from gpact.report.roofline import format_roofline, run_roofline

        rr = run_roofline(candidates, device, steps, setting, kernel, repeat, echo=echo)
        click.echo(json.dumps(rr.to_dict()) if as_json else format_roofline(rr))
        return

    r = run_bench(candidates, device, steps, naive_max, kernel=kernel, echo=echo, setting=setting, repeat=repeat,
                  naive_threads=naive_threads)
    if as_json:
        click.echo(json.dumps(r.to_dict()))
        return
    subset = f" (timed on {r.naive_candidates} of {r.candidates})" if r.naive_candidates < r.candidates else ""
    runs = f", median of {r.repeat} runs" if r.repeat > 1 else ""
    click.echo(f"device {r.device}, setting {r.setting}: {r.candidates} candidates x {r.networks_per_candidate} "
               f"networks, {r.steps} steps{runs}")
    click.echo(f"reference: {r.naive_trainings_per_s:9.2f} trainings/s{subset}, {r.naive_threads} torch thread(s)")
    click.echo(f"batched:   {r.batched_trainings_per_s:9.2f} trainings/s")
    spread = f" (runs: {', '.join(f'{s:.1f}' for s in r.speedups)})" if r.repeat > 1 else ""
    click.echo(f"speed-up:  {r.speedup:9.1f}x{spread}")
    if r.peak_bytes_per_candidate is not None:
        click.echo(f"memory:    {r.peak_bytes_per_candidate / 2**20:9.2f} MiB per candidate at peak "
                   f"(estimate used for chunking: {r.estimated_bytes_per_candidate / 2**20:.2f} MiB)")
