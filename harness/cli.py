"""The `harness` command line.

    harness bootstrap --profile tiny [key=value ...]
    harness eval CHECKPOINT --profile tiny [--suites math,code,reasoning_gym] [--out DIR] [--replicas K [--address ADDR]
                [--gpus-per-replica G]] [key=value ...]
    harness rescore EVAL_DIR
    harness train prorl|brorl --profile tiny [--out DIR] [--resume] [--base CHECKPOINT] [key=value ...]
    harness compare prorl brorl --profile tiny [--seeds K] [--out DIR] [--resume] [--replicas K [--eval-address ADDR]
                [--evals-at-once E]] [key=value ...]
    harness sweep --profile smoke [--n 4,16,64,256,512] [--seeds K] [--out DIR] [key=value ...]
    harness report DIR
    harness regress --profile smoke [--update] [--fail-fast]
    harness bench rollout|memory|update|sandbox --profile P [--engines hf,vllm]
    harness bench reward --profile P [--responses 384] [--workers 1,2] [--nodes 8 --node-cpus 112 --gpus-per-node 8]
    harness bench rollout|memory|update|step --shape --profile shape-1.5b [--out FILE] [key=value ...]
    harness bench matmul --profile shape-1.5b [--size 8192] [--out FILE]
    harness bench step --profile P [--repeats 3] [--n A[,B]] [--prompts-per-step A[,B]] [--shape [--prompt-tokens 256]]
    harness plan --profile prorlv2-1.5b [--gpu-memory-gib 80] [--gpu-tokens T] [--replicas 1,8,64] [--decode-tokens-per-s R]
    harness simulate [--objective linear|logprob] [--init seeded|zeros|normal:S] [--anchor correct|incorrect] [--n 4,8,16,512,51200]
                     [--optimizer adamw|sgd] [--lr LR] [--eps E] [--weight-decay WD] [--seed S] [--out DIR]

Overrides are dotted config keys (harness/config/schema.py), e.g. `eval.k=4 rollout.device=cpu`.
Bad input (any `harness.config.UserError`: unknown profile, key or value, a missing checkpoint, a
folder another command wrote) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from harness.config import ConfigError, UserError, available_profiles, load_config

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Rollout-scaling harness: ProRL vs BroRL, measured.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def backend(p: argparse.ArgumentParser):
        p.add_argument("--backend", choices=["local", "verl"], default="local",
                       help="local: the harness's own trainer in this process; verl: the recipe compiled to verl and run "
                       "on Ray (docs/verl.md)")
        p.add_argument("--nodes", type=int, default=1, help="verl: nodes of the Ray cluster")
        p.add_argument("--gpus-per-node", type=int, default=8, help="verl: GPUs per node")
        p.add_argument("--dry-run", action="store_true", help="verl: write the commands, data and translations; run nothing")
        p.add_argument("--address", default=None,
                       help="verl: submit with `ray job submit --address ADDRESS` instead of a local Ray")
        p.add_argument("--verl-override", action="append", default=[], metavar="KEY=VALUE",
                       help="verl: a Hydra override of verl's ppo_trainer config, after the compiled ones (repeatable; "
                       "written to verl/overrides.txt)")

    def replicas(p: argparse.ArgumentParser, address: str = "--address"):
        p.add_argument("--replicas", type=int, default=1, metavar="K",
                       help="evaluate on K engine replicas as Ray actors, each a shard of the engine calls (default: 1, here)")
        p.add_argument(address, dest="ray_address", default=None, metavar="ADDR",
                       help="join this Ray cluster for the evaluation replicas, ray.init's address, e.g. HEAD:6379 (default: a "
                       "local cluster when --replicas > 1)")
        p.add_argument("--gpus-per-replica", type=int, default=None, metavar="G",
                       help="GPUs of one vllm replica, its tensor parallelism (default: rollout.vllm.tensor_parallel_size)")

    def common(p: argparse.ArgumentParser):
        p.add_argument(
            "--profile", default="tiny",
            help=f"profile name ({', '.join(available_profiles())}) or a YAML path (default: tiny)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.epilog = "Trailing key=value arguments override config fields, e.g. eval.k=8 rollout.device=cpu."

    p = sub.add_parser("bootstrap", help="build (or reuse) the profile's tiny base checkpoint; prints its path last")
    p.add_argument("--force", action="store_true", help="rebuild even if a cached checkpoint exists")
    common(p)
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("eval", help="pass@1 over k samples and mean output tokens for a checkpoint")
    p.add_argument(
        "checkpoint",
        help=f"checkpoint directory (save_pretrained format), hub model id, or {CHECKPOINT_NAMES}",
    )
    p.add_argument("--suites", default=None, help="comma-separated suites (default: all of the profile's)")
    p.add_argument("--out", default=None,
                   help="the evaluation's folder: every response and score as it is made (responses/), the result in "
                   "DIR/eval.json; the same command on the same folder resumes it (default: results/evals/<timestamp>-<profile>)")
    replicas(p)
    common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("rescore", help="score an evaluation folder's kept responses again with the current scorers (no generation)")
    p.add_argument("folder", help="a `harness eval` folder (finished)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_rescore, overrides=[])

    p = sub.add_parser("train", help="train one RL arm (a recipe: prorl, brorl, or a YAML path) from the profile's base")
    p.add_argument("recipe", help="recipe name (prorl, brorl) or a YAML path; its train.trainer names the trainer")
    p.add_argument("--out", default=None, help="output folder (default: results/runs/<timestamp>-<profile>-<recipe>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--base", default=None,
                   help=f"start from this checkpoint instead of the profile's bootstrapped base: a directory, hub id, "
                   f"or {CHECKPOINT_NAMES}")
    backend(p)
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="train two arms from one base under the same budget, evaluate, write Tables 2-4 and the figure")
    p.add_argument("arms", nargs="+", metavar="ARM", help="two recipes (prorl brorl) or registered trainer names")
    p.add_argument("--out", default=None, help="output folder (default: results/runs/<timestamp>-<profile>)")
    p.add_argument("--resume", action="store_true", help="continue the comparison in --out (with the same --seeds)")
    p.add_argument("--seeds", type=int, default=None, metavar="K",
                   help="train each arm K times from the same base with train.seed = 0..K-1 (offset by a configured "
                   "train.seed); tables show means over seeds with 95%% intervals over seeds (default: 1, or on "
                   "--resume the K the comparison was started with; a different K is refused)")
    replicas(p, address="--eval-address")
    p.add_argument("--evals-at-once", type=int, default=None, metavar="E",
                   help="with --eval-address: evaluate up to E checkpoints at once on that cluster, beside the training "
                   "(the baseline while the first arm trains; default: 4); without it, or under a cpu_s budget, one at a "
                   "time between trainings")
    backend(p)
    common(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sweep", help="one recipe (brorl) at several N with the same samples per step and budget, "
                       "evaluated; writes sweep.json, sweep.md and sweep.png")
    p.add_argument("--n", default="4,16,64,256,512",
                   help="comma-separated rollouts per prompt; each must divide the samples per step (default: 4,16,64,256,512)")
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="runs per N with train.seed = 0..K-1 (offset by a configured train.seed), as compare (default: 1)")
    p.add_argument("--out", default=None, help="output folder, new or empty (default: results/runs/<timestamp>-<profile>-sweep)")
    common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plan", help="what a run of the profile needs: both arms' recipe, tokens per step, memory per GPU, GPUs")
    p.add_argument("--profile", default="tiny", help=f"profile name ({', '.join(available_profiles())}) or a YAML path")
    p.add_argument("--gpu-memory-gib", type=float, default=80.0, help="memory of one GPU (default: 80, an H100)")
    p.add_argument("--gpu-tokens", type=int, default=None, help="tokens per GPU micro-batch (default: train.micro_batch_tokens)")
    p.add_argument("--replicas", default=None, metavar="K[,K...]",
                   help="evaluation: the wall time at these replica counts (default: 1,8,64)")
    p.add_argument("--decode-tokens-per-s", type=float, default=None, metavar="R",
                   help="evaluation: generated tokens per second of one GPU (default: 7500, a 1.5B model at long context on an H100)")
    p.set_defaults(func=cmd_plan, overrides=[])

    p = sub.add_parser("report", help="re-render tables.md, figure1.png and summary.json of a comparison folder")
    p.add_argument("folder", help="a `harness compare` output folder (finished or interrupted)")
    p.add_argument("--quiet", action="store_true", help="do not print the tables")
    p.set_defaults(func=cmd_report, overrides=[])

    p = sub.add_parser("regress", help="run the profile's comparison and check it against harness/baselines/<profile>.json")
    p.add_argument("--update", action="store_true", help="write the baseline from this run instead of checking (on purpose)")
    p.add_argument("--out", default=None, help="keep the comparison folder here (default: a temporary folder)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first evaluation with a score beyond tolerance (quicker when something broke)")
    common(p)
    p.set_defaults(func=cmd_regress)

    p = sub.add_parser("bench", help="benchmarks that print their figures")
    p.add_argument("what", choices=["rollout", "memory", "update", "step", "sandbox", "reward", "matmul"],
                   help="rollout: generation throughput at several N; memory: peak memory of one RL step at N=16 "
                   "and N=512; update: one policy update at N=16 and N=512, per-sample vs shared-prompt; "
                   "step: one RL step of each arm, phase by phase (generate, score, sync, logprob passes, update); "
                   "sandbox: executions/s of trivial programs and tiny code responses scored/s in the code "
                   "sandbox, each run starting its own interpreter vs started by the fork server; reward: verl's reward "
                   "path on a sample of one BroRL step's responses, samples/s per CPU at each --workers, projected minutes "
                   "per step on --nodes x --node-cpus; matmul: the measured "
                   "matrix-product peak in the profile's rollout dtype on its rollout device")
    p.add_argument("--checkpoint", default="base", help="model to generate with / step: to start from (default: the profile's base)")
    p.add_argument("--n", default=None, help="rollout: comma-separated samples per prompt (default: 16,512); step: rollouts "
                   "per prompt, one value for both arms or prorl,brorl (default: the recipes')")
    p.add_argument("--prompts-per-step", default=None,
                   help="step: prompts per step, one value for both arms or prorl,brorl (default: the recipes')")
    p.add_argument("--prompt-tokens", default=None,
                   help="rollout: comma-separated prompt lengths, each prompt lengthened to at least that many tokens "
                   "(default: as they are); step --shape: random prompt tokens per prompt (default: 256)")
    p.add_argument("--samples", type=int, default=2048, help="samples per measurement (prompts = samples / N; "
                   "sandbox: samples / 4 trivial programs and samples / 8 code responses)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per sample")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is printed")
    p.add_argument("--engines", default="hf", help="rollout: comma-separated engines measured side by side (hf, vllm)")
    p.add_argument("--shape", action="store_true",
                   help="memory: one policy update at each --lengths on a randomly initialised model of the profile's "
                   "bootstrap.model shape (nothing bootstrapped), output layer unchunked vs chunked (e.g. shape-1.5b); "
                   "step: one step's compute and memory per phase at that shape (random prompts, no scoring); "
                   "rollout: hf engine vs transformers generate at that shape, random prompts of --prompt-tokens "
                   "(default 256); update: one update per arm at that shape, per-sample vs shared-prompt, and its MFU "
                   "(harness/jobs/bench_shape.py). No suite is built, so none of the suites' packages is needed")
    p.add_argument("--lengths", default="1024,2048,4096", help="memory --shape: comma-separated response lengths")
    p.add_argument("--responses", type=int, default=384, help="reward: responses in the sample of one BroRL step")
    p.add_argument("--workers", default="1,2", help="reward: comma-separated reward actor counts, side by side")
    p.add_argument("--nodes", type=int, default=8, help="reward: nodes of the projected cluster")
    p.add_argument("--node-cpus", type=int, default=112, help="reward: CPUs per projected node (DGX H100: 112 cores)")
    p.add_argument("--gpus-per-node", type=int, default=8, help="reward: GPUs per projected node")
    p.add_argument("--response-chars", type=int, default=4000, help="reward: characters of reasoning before each answer")
    p.add_argument("--tokenizer", default=None, help="reward, with verl installed: a local tokenizer folder for verl's decode")
    p.add_argument("--size", type=int, default=None, help="matmul: matrix side (default: 8192 on CUDA, 1024 on a CPU)")
    p.add_argument("--out", default=None, help="--shape and matmul: also write the rows as JSON to this file (atomically), "
                   "with the provenance (commit, packages, machine)")
    common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("simulate", help="the BroRL paper's toy simulation (Sec. 2, 4.1), its settings by default: "
                                        "Q_pos, the per-token panels and the terms of ΔQ_pos, per N")
    p.add_argument("--vocab", type=int, default=128_000, help="vocabulary size (default: 128000)")
    p.add_argument("--correct", type=int, default=10_000, help="correct tokens, ids 0..C-1 (default: 10000)")
    p.add_argument("--steps", type=int, default=1_000, help="optimizer steps per N (default: 1000)")
    p.add_argument("--n", default="4,8,16,512,51200", help="comma-separated rollouts per step (default: 4,8,16,512,51200)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument("--optimizer", default="adamw", help="adamw or sgd (plain, no momentum) (default: adamw)")
    p.add_argument("--eps", type=float, default=1e-8, help="AdamW's epsilon (default: 1e-8, torch's; the paper does not say)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW's decoupled decay / SGD's L2 (default: 0.01, torch's AdamW default)")
    p.add_argument("--objective", default="linear",
                   help="linear: the paper's surrogate -(1/N) sum a_n p(y_n) (default); logprob: the policy-gradient loss -(1/N) sum a_n log p(y_n)")
    p.add_argument("--baseline", default="mean", help="mean: advantage = reward - batch mean (default); none: raw rewards")
    p.add_argument("--init", default="seeded",
                   help="logit initialisation: seeded (the paper's: 3 on the correct set, one anchor at 5, else 0; default), zeros, or normal:S")
    p.add_argument("--anchor", default="correct",
                   help="seeded init's anchor token: correct (token 0, default) or incorrect (token C); the paper does not say")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial logits and each N's sampling (default: 0)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default: 1; the work is vector ops on V logits, which extra threads on a shared CPU slowed 10x)")
    p.add_argument("--out", default=None, help="output folder (default: results/runs/<timestamp>-simulate)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_simulate, overrides=[])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    for item in extra:
        if item.startswith("-") or "=" not in item:
            parser.error(f"unrecognized argument '{item}' (config overrides are key=value)")
    args.overrides = extra
    try:
        return args.func(args)
    except UserError as exc:  # config, checkpoint, dataset, folder: every mistake a user can fix
        print(f"harness: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130


def _setup(args, recipe: str | None = None, training: bool = False, local_engine: bool = True, suites: bool = True):
    """The validated config of a command, and the process set up for it (threads, quiet logs).
    `training`: the command trains (train, compare), so the profile's hardware requirement is checked first.
    `local_engine`: the command generates here, so the profile's rollout engine must be installed.
    `suites`: the command builds suites, so the profile's suite settings are checked (which imports
    reasoning-gym); a command that builds none (`bench --shape`) runs without the suites' packages."""
    cfg = load_config(args.profile, args.overrides, recipe=recipe)
    if training:
        from harness.jobs.train import check_requirements  # lazy: the CLI imports a command's modules only when it runs

        check_requirements(cfg)
    from harness.rollout import check_engine  # lazy: the CLI imports a command's modules only when it runs

    if suites:
        from suites import check_suites  # lazy: the CLI imports a command's modules only when it runs

        check_suites(cfg.suites)
    if local_engine:
        check_engine(cfg.rollout)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    return cfg


CHECKPOINT_NAMES = ("`base` for the profile's bootstrapped base (built if missing), `base:early` for its earlier "
                    "RL point, `base:sft` for its supervised-only model before RL (write ./base for a local "
                    "folder of that name)")


def _checkpoint(cfg, path: str, quiet: bool) -> str:
    """A checked checkpoint path; the names in bootstrap.NAMED stand for the bootstrap's checkpoints."""
    from harness.checkpoint import CheckpointError, check_checkpoint
    from harness.jobs.base_model import NAMED, named_checkpoint

    if path in NAMED:
        path = str(named_checkpoint(cfg, path, progress=not quiet, log=_log))
    elif path.startswith("base:") and not os.path.exists(path):
        raise CheckpointError(f"unknown checkpoint name '{path}'; valid: {', '.join(NAMED)} (or a directory or hub id)")
    check_checkpoint(path)
    return path


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_bootstrap(args) -> int:
    cfg = load_config(args.profile, args.overrides)
    if cfg.base.checkpoint:
        raise ConfigError(f"profile '{cfg.profile}' starts from {cfg.base.checkpoint} (base.checkpoint): there is no base to "
                          "bootstrap; use a profile without base.checkpoint (tiny, smoke)")
    cfg = _setup(args)
    from harness.jobs.base_model import bootstrap

    path = bootstrap(cfg, force=args.force, progress=not args.quiet, log=_log)
    print(path)
    return 0


def cmd_eval(args) -> int:
    import datetime
    from pathlib import Path

    from harness.jobs.eval_run import Replicas, check_replicas

    replicas = Replicas(count=args.replicas, address=args.ray_address, gpus_per_replica=args.gpus_per_replica)
    check_replicas(replicas)
    # replicas on a cluster generate there: this machine needs the engine only when it generates itself
    cfg = _setup(args, local_engine=args.ray_address is None)
    from harness.jobs.eval_run import evaluate_to_folder
    from harness.jobs.eval_store import RESULT
    from harness.jobs.evaluate import format_eval_table
    from suites import SUITES

    names = [s.strip() for s in (args.suites or ",".join(cfg.suites.enabled)).split(",") if s.strip()]
    for name in names:
        if name not in SUITES:
            raise ConfigError(f"unknown suite '{name}' in --suites; valid: {', '.join(SUITES)}")
    if args.out and args.out.endswith(".json") and not os.path.isdir(args.out):
        raise ConfigError(f"invalid value for --out: {args.out!r}; --out is the evaluation's folder (its result is "
                          f"FOLDER/{RESULT}), e.g. {args.out[:-5]!r}")
    args.checkpoint = _checkpoint(cfg, args.checkpoint, args.quiet)
    out = Path(args.out) if args.out else Path("results/evals") / f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{cfg.profile}"
    results = evaluate_to_folder(cfg, args.checkpoint, names, out, replicas, progress=not args.quiet, log=_log)
    print(format_eval_table(results))
    print(f"wrote {out / RESULT}")
    return 0


def cmd_rescore(args) -> int:
    from pathlib import Path

    from harness.jobs.eval_run import rescore_folder
    from harness.jobs.eval_store import RESULT
    from harness.jobs.evaluate import format_eval_table

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    results, changed, total = rescore_folder(Path(args.folder), progress=not args.quiet, log=_log)
    print(format_eval_table(results))
    print(f"rescored {total} samples: {changed} changed reward or status; wrote {Path(args.folder) / RESULT}")
    return 0


def cmd_train(args) -> int:
    from harness.config import available_recipes

    known = available_recipes()
    if args.recipe not in known and not args.recipe.endswith((".yaml", ".yml")):
        raise ConfigError(f"unknown recipe '{args.recipe}'; valid: {', '.join(known)} (or a path to a .yaml file)")
    if args.backend == "verl":
        return _train_verl(args)
    cfg = _setup(args, recipe=args.recipe, training=True)
    import datetime
    from pathlib import Path

    from harness.jobs.train import run_training

    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out: the folder of the run to continue")
    if args.base is not None:
        args.base = _checkpoint(cfg, args.base, args.quiet)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results/runs") / f"{stamp}-{cfg.profile}-{Path(args.recipe).stem}"
    final = run_training(cfg, Path(args.recipe).stem, out, resume=args.resume, base=args.base,
                         progress=not args.quiet, log=_log, restart=False)
    from harness.jobs.train import format_learning, learning_summary
    from harness.runs import METRICS_FILE, read_metrics

    rows = read_metrics(out / METRICS_FILE)
    print(f"metrics: {out / METRICS_FILE}")
    print(format_learning(learning_summary(rows)))
    from harness.report.summary import probe_summary

    probe = probe_summary(rows)
    if probe is not None:  # train.probe_every
        print(f"ΔQ_pos probe: {probe['probed_updates']} updates, mean mass on the probe's known-correct responses fell "
              f"after {100 * probe['fall_rate']:.0f}% of them; mean ΔQ_pos {probe['delta_q_pos']:+.3g}, mean Δ log p "
              f"{probe['logp_delta']:+.4f}, now Q_pos {probe['q_pos_last']:.3g}")
    print(final)
    return 0


def _verl_options(args):
    """The --backend verl options, checked; None for --backend local (where they must be left alone)."""
    from harness.jobs.train_verl import VerlOptions

    if args.backend != "verl":
        if args.dry_run or args.address or args.nodes != 1 or args.gpus_per_node != 8 or args.verl_override:
            raise ConfigError("--nodes, --gpus-per-node, --dry-run, --address and --verl-override are for --backend verl")
        return None
    if args.nodes < 1 or args.gpus_per_node < 1:
        raise ConfigError(f"invalid value for --nodes/--gpus-per-node: {args.nodes}/{args.gpus_per_node}; both must be >= 1")
    return VerlOptions(nodes=args.nodes, gpus_per_node=args.gpus_per_node, address=args.address, dry_run=args.dry_run,
                       overrides=tuple(args.verl_override))


def _train_verl(args) -> int:
    """`harness train --backend verl`: compile, write, and (without --dry-run) run and read back."""
    if args.resume or args.base is not None:
        raise ConfigError("--resume and --base are for --backend local; verl starts from the profile's "
                          "base.checkpoint, and running the same --out again skips the segments verl saved")
    _verl_options(args)
    # a dry run or a job for a remote cluster needs nothing of this machine; a local run needs its GPUs
    cfg = _setup(args, recipe=args.recipe, training=not args.dry_run and args.address is None, local_engine=False)
    import datetime
    from pathlib import Path

    from harness.jobs.train_verl import VERL, VerlJobError, import_verl_run, prepare, run

    out = Path(args.out) if args.out else Path("results/runs") / (
        f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{cfg.profile}-{Path(args.recipe).stem}-verl")
    if out.exists() and any(out.iterdir()) and not (out / VERL).is_dir():
        raise ConfigError(f"--out '{out}' exists and is not a verl run folder; give a new folder")
    verl = _verl_options(args)
    job = prepare(cfg, Path(args.recipe).stem, out, verl, log=_log)
    print((out / VERL / "translation.md").read_text(), end="")
    print(f"\nverl command: {out / VERL / 'command.sh'}\n  {len(job.segments)} x {' '.join(job.command(0)[:3])} ... "
          f"({len(job.overrides)} overrides shared, {len(job.segments[0].overrides)} per segment)")
    if args.dry_run:
        print(f"dry run: nothing ran; files in {out / VERL}")
        return 0
    try:
        run(job, out, verl, log=_log)
    except VerlJobError as exc:
        print(f"{exc}\nits metrics so far are read back; run the same command again to continue from verl's last save",
              file=sys.stderr)
        return 1
    print(f"wrote {import_verl_run(out)}")
    return 0


def cmd_compare(args) -> int:
    import datetime
    from pathlib import Path

    from harness.jobs.compare import arm_configs, run_compare, run_seeds
    from harness.report import render

    verl = _verl_options(args)
    # a verl dry run needs nothing of this machine; a verl job on a remote cluster needs GPUs here only to evaluate
    cfg = _setup(args, training=verl is None or not (verl.dry_run or verl.address), local_engine=not (verl and verl.dry_run))
    run_seeds(arm_configs(args.profile, args.arms, args.overrides), 1 if args.seeds is None else args.seeds)  # validate first
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out: the folder of the comparison to continue")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results/runs") / f"{stamp}-{cfg.profile}"
    from harness.jobs.eval_run import Replicas, check_replicas

    replicas = Replicas(count=args.replicas, address=args.ray_address, gpus_per_replica=args.gpus_per_replica)
    check_replicas(replicas)
    run_compare(args.profile, args.arms, out, args.overrides, resume=args.resume, progress=not args.quiet, log=_log,
                seeds=args.seeds, verl=verl, replicas=replicas, evals_at_once_asked=args.evals_at_once)
    if verl is not None and verl.dry_run:
        for path in sorted(out.glob("arms/*/seed*/verl/command.sh")):
            print(f"{path.parent.parent.parent.name} seed {path.parent.parent.name[4:]}: {path}")
        print("dry run: nothing ran; each run's verl/translation.md says what its recipe became in verl")
        return 0
    summary = render(out)
    print((out / "tables.md").read_text())
    print(f"wrote {out / 'summary.json'}, {out / 'tables.md'}, {out / 'figure1.png'}")
    _warn_load(summary)
    return 0


def _warn_load(summary: dict) -> None:
    """The one-line warning of a comparison trained on a busy machine (harness/report/summary.py `load_warning`)."""
    from harness.report.summary import load_warning

    warning = load_warning(summary)
    if warning:
        _log(warning)


def cmd_sweep(args) -> int:
    import datetime
    from pathlib import Path

    from harness.jobs.sweep import RECIPE, run_sweep
    from harness.report.sweep import SWEEP_JSON, SWEEP_MD, SWEEP_PNG, render_sweep

    ns = _positive_ints(args.n, "--n")
    cfg = _setup(args, recipe=RECIPE, training=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results/runs") / f"{stamp}-{cfg.profile}-sweep"
    run_sweep(args.profile, ns, out, args.overrides, seeds=args.seeds, progress=not args.quiet, log=_log)
    render_sweep(out)
    print((out / SWEEP_MD).read_text())
    print(f"wrote {out / SWEEP_JSON}, {out / SWEEP_MD}, {out / SWEEP_PNG}")
    return 0


def cmd_plan(args) -> int:
    from harness.jobs.plan import render_plan

    load_config(args.profile)  # a bad profile is one line, before anything else
    if args.gpu_memory_gib <= 0:
        raise ConfigError(f"invalid value for --gpu-memory-gib: {args.gpu_memory_gib:g}; expected a positive number")
    if args.gpu_tokens is not None and args.gpu_tokens < 1:
        raise ConfigError(f"invalid value for --gpu-tokens: {args.gpu_tokens}; expected a positive integer")
    replicas = _positive_ints(args.replicas, "--replicas") if args.replicas is not None else None
    if args.decode_tokens_per_s is not None and args.decode_tokens_per_s <= 0:
        raise ConfigError(f"invalid value for --decode-tokens-per-s: {args.decode_tokens_per_s:g}; expected a positive number")
    from harness.jobs.plan import DECODE_TOKENS_PER_S

    print(render_plan(args.profile, gpu_gib=args.gpu_memory_gib, gpu_tokens=args.gpu_tokens, replicas=replicas,
                      decode_tokens_per_s=args.decode_tokens_per_s or DECODE_TOKENS_PER_S))
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from harness.report import render

    summary = render(Path(args.folder))
    if not args.quiet:
        print((Path(args.folder) / "tables.md").read_text())
    print(f"wrote {Path(args.folder) / 'tables.md'}")
    _warn_load(summary)
    return 0


def cmd_regress(args) -> int:
    from pathlib import Path

    from harness.regress import run_regress

    _setup(args)
    return run_regress(args.profile, args.overrides, args.update, Path(args.out) if args.out else None,
                       progress=not args.quiet, log=_log, fail_fast=args.fail_fast)


def _positive_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"invalid value for {option}: {text!r}; expected comma-separated positive integers")
    return values


SHAPE_BENCHES = ("rollout", "memory", "update", "step", "matmul")
"""The benchmarks that run at a model shape (`--shape`; matmul needs no model): none builds a suite."""


def _bench_out(args, cfg, found: dict) -> int:
    """`--out FILE`: the benchmark's result and its provenance, written atomically; 0 (the exit status)."""
    if args.out:
        import dataclasses

        from harness import provenance
        from harness.runs import write_json_atomic

        record = {"bench": args.what, "shape": args.shape, "profile": cfg.profile, "overrides": list(args.overrides), **found,
                  "shape_model": dataclasses.asdict(cfg.bootstrap.model), "provenance": provenance.collect(seed=cfg.seed)}
        write_json_atomic(args.out, record)
        print(f"wrote {args.out}")
    return 0


def cmd_bench(args) -> int:
    if (args.shape or args.what == "matmul") and args.what not in SHAPE_BENCHES:
        raise ConfigError(f"--shape is for bench {', '.join(SHAPE_BENCHES[:-1])}; not for bench {args.what}")
    if args.out is not None and not (args.shape or args.what == "matmul"):
        raise ConfigError("--out is for bench --shape and bench matmul")
    # the benchmarks that train on the profile's base need what training needs (--shape builds its own model)
    # --shape builds its own random model and prompts: no base, no suites; reward: nothing is generated
    cfg = _setup(args, training=args.what in ("memory", "update", "step") and not args.shape,
                 local_engine=args.what != "reward", suites=not (args.shape or args.what == "matmul"))
    if args.what == "sandbox":
        from harness.jobs.bench_sandbox import bench_sandbox

        _positive_ints(f"{args.samples},{args.repeats}", "--samples/--repeats")
        bench_sandbox(cfg, args.samples, args.repeats)
        return 0
    if args.what == "reward":
        from harness.jobs.bench_reward import bench_reward

        workers = _positive_ints(args.workers, "--workers")
        _positive_ints(f"{args.responses},{args.nodes},{args.node_cpus},{args.gpus_per_node},{args.response_chars}",
                       "--responses/--nodes/--node-cpus/--gpus-per-node/--response-chars")
        bench_reward(args.profile, args.overrides, args.responses, workers, args.nodes, args.node_cpus, args.gpus_per_node,
                     args.response_chars, args.tokenizer)
        return 0
    if args.what == "matmul":
        from harness.jobs.bench_shape import bench_matmul

        _positive_ints(str(args.repeats), "--repeats")
        return _bench_out(args, cfg, bench_matmul(args.profile, args.overrides, args.size, args.repeats))
    if args.what == "memory" and args.shape:
        from harness.jobs.bench import bench_update_memory

        lengths = _positive_ints(args.lengths, "--lengths")
        print(f"one policy update (forward + backward of the loss) per response length, profile {cfg.profile}, "
              "each in its own process")
        return _bench_out(args, cfg, {"rows": bench_update_memory(args.profile, args.overrides, lengths)})
    if args.what in ("rollout", "update") and args.shape:
        from harness.jobs.bench_shape import bench_rollout_shape, bench_update_shape

        prompt_tokens = _positive_ints(args.prompt_tokens or "256", "--prompt-tokens")
        if len(prompt_tokens) != 1:
            raise ConfigError(f"invalid value for --prompt-tokens: {args.prompt_tokens!r}; --shape takes one length")
        _positive_ints(f"{args.samples},{args.max_new_tokens},{args.repeats}", "--samples/--max-new-tokens/--repeats")
        if args.what == "rollout":
            found = bench_rollout_shape(args.profile, args.overrides, _positive_ints(args.n or "16,512", "--n"), args.samples,
                                        prompt_tokens[0], args.max_new_tokens, args.repeats)
        else:
            n = _positive_ints(args.n, "--n") if args.n is not None else None
            k = _positive_ints(args.prompts_per_step, "--prompts-per-step") if args.prompts_per_step is not None else None
            found = bench_update_shape(args.profile, args.overrides, n, k, prompt_tokens[0], args.max_new_tokens, args.repeats)
        return _bench_out(args, cfg, found)
    if args.what == "memory":
        from harness.jobs.bench import bench_memory

        print(f"one RL step per arm, profile {cfg.profile}, micro-batch budget {cfg.train.micro_batch_tokens} tokens")
        bench_memory(args.profile, args.overrides)
        return 0
    if args.what == "update":
        _positive_ints(str(args.repeats), "--repeats")
        import torch

        from harness.jobs.bench import bench_update

        print(f"one policy update per arm, profile {cfg.profile}, micro-batch budget {cfg.train.micro_batch_tokens} "
              f"tokens, median of {args.repeats}, {torch.get_num_threads()} threads")
        bench_update(args.profile, args.overrides, args.repeats)
        return 0
    if args.what == "step":
        from harness.jobs.bench_step import bench_step, bench_step_shape

        n = _positive_ints(args.n, "--n") if args.n is not None else None
        k = _positive_ints(args.prompts_per_step, "--prompts-per-step") if args.prompts_per_step is not None else None
        prompt_tokens = 256 if args.prompt_tokens is None else args.prompt_tokens
        for value, option in ((args.repeats, "--repeats"), (args.max_new_tokens, "--max-new-tokens"), (prompt_tokens, "--prompt-tokens")):
            _positive_ints(str(value), option)
        if args.shape:
            rows = bench_step_shape(args.profile, args.overrides, n, k, int(prompt_tokens), args.max_new_tokens, args.repeats)
            _bench_out(args, cfg, {"rows": rows})
            return 1 if any("error" in r for r in rows) else 0
        base = None if args.checkpoint == "base" else _checkpoint(cfg, args.checkpoint, args.quiet)
        print(f"one RL step per arm, profile {cfg.profile}, base {base or 'of the profile'}: median step of {args.repeats} "
              "after a warm-up step; seconds and share of the step per phase")
        bench_step(args.profile, args.overrides, args.repeats, n, k, base=base)
        return 0
    ns = _positive_ints(args.n or "16,512", "--n")
    from harness.config import RolloutConfig
    from harness.rollout import ENGINES, check_engine

    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        raise ConfigError(f"invalid value for --engines: {args.engines!r}; valid: a comma-separated list of {', '.join(ENGINES)}")
    for name in engines:
        check_engine(RolloutConfig(engine=name))
    _positive_ints(f"{args.samples},{args.max_new_tokens},{args.repeats}", "--samples/--max-new-tokens/--repeats")
    lengths = _positive_ints(args.prompt_tokens, "--prompt-tokens") if args.prompt_tokens is not None else None
    from harness.checkpoint import load_policy
    from harness.jobs.bench import bench_rollout
    from suites import build_suite

    path = _checkpoint(cfg, args.checkpoint, args.quiet)
    model, tokenizer = load_policy(path, cfg.rollout.device, cfg.rollout.dtype)
    prompts = [it.prompt for it in build_suite("reasoning_gym", cfg.suites, cfg.seed).items("eval", 64)]
    import torch

    print(f"rollout throughput: {path}, {args.samples} samples x {args.max_new_tokens} new tokens, "
          f"median of {args.repeats}, device {model.device}, {torch.get_num_threads()} threads")
    bench_rollout(model, tokenizer, prompts, ns, args.samples, args.max_new_tokens,
                  cfg.rollout, args.repeats, engines=engines, prompt_tokens=lengths)
    return 0


def cmd_simulate(args) -> int:
    import datetime
    from pathlib import Path

    from harness import provenance
    from harness.jobs.simulate import SimSettings, check_settings, format_table, simulate, write_result
    from harness.report.simulation import render_simulation_figure
    from harness.runs import SIM_FIGURE_FILE

    if args.overrides:
        raise ConfigError(f"harness simulate takes no key=value overrides (got {args.overrides[0]!r}); use its options (see --help)")
    settings = SimSettings(vocab=args.vocab, correct=args.correct, steps=args.steps, ns=tuple(_positive_ints(args.n, "--n")),
                           lr=args.lr, optimizer=args.optimizer, eps=args.eps, weight_decay=args.weight_decay,
                           objective=args.objective, baseline=args.baseline, init=args.init, anchor=args.anchor, seed=args.seed)
    check_settings(settings)  # every bad value is one line, before anything runs or is written
    _positive_ints(str(args.threads), "--threads")
    import torch

    torch.set_num_threads(args.threads)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results/runs") / f"{stamp}-simulate"
    result = simulate(settings, log=None if args.quiet else _log)
    paths = write_result(result, out, provenance.collect(seed=settings.seed))
    figure = render_simulation_figure(result, out / SIM_FIGURE_FILE)
    print(format_table(result))
    print(f"wrote {paths[0]}, {paths[1]}, {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
