"""The ``recsys`` command line.

Every command turns a domain error (bad data, bad config, broken bundle) into one line on stderr
and exit code 2; ``--debug`` shows the traceback instead. Heavy imports (torch, implicit, faiss)
happen inside the commands that need them so ``recsys --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from recsys.errors import RecsysError

EXIT_BAD_INPUT = 2


def _cmd_generate(args: argparse.Namespace) -> None:
    from recsys.data.synthetic import ShopConfig, generate_shop

    config = ShopConfig(users=args.users, items=args.items, days=args.days, seed=args.seed)
    started = time.perf_counter()
    shop = generate_shop(config)
    shop.save(args.out)
    print(f"generated {len(shop.events):,} events, {len(shop.items):,} items, "
          f"{shop.events['user_id'].nunique():,} users in {time.perf_counter() - started:.1f}s "
          f"-> {args.out}")


def _cmd_validate(args: argparse.Namespace) -> None:
    from pipelines.prepare import print_lines, validate_dir

    dataset = validate_dir(args.directory, report_path=args.report, now=args.now)
    print_lines(dataset.report.lines())
    report = args.report or Path(args.directory) / "validation.json"
    print(f"valid: {args.directory} (report: {report})")


def _cmd_prepare(args: argparse.Namespace) -> None:
    from pipelines.prepare_events import prepare_command

    prepare_command(args)


def _cmd_import(args: argparse.Namespace) -> None:
    from recsys.data import importers

    if args.format == "online-retail":
        from recsys.data.importers.online_retail import import_online_retail

        result: importers.ImportResult = import_online_retail(args.path)
    elif args.format == "movielens":
        from recsys.data.importers.movielens import import_movielens

        result = import_movielens(args.path)
    else:
        from recsys.data.importers.mapped import import_mapped

        result = import_mapped(args.path, args.mapping, items_path=args.items)
    result.save(args.out)
    for key, value in result.notes.items():
        print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
    print(f"wrote {len(result.events):,} events and {len(result.items):,} items -> {args.out}")


def _cmd_train(args: argparse.Namespace) -> None:
    from pipelines.train import train
    from recsys.config import load_train_config

    spark = None
    if args.engine == "spark":
        from recsys.data.spark.session import SparkSettings

        spark = SparkSettings(master=args.spark_master, driver_memory=args.driver_memory)
    train(args.data, args.out, load_train_config(args.config), engine=args.engine, spark=spark,
          workers=args.workers)


def _cmd_recommend(args: argparse.Namespace) -> None:
    from pipelines.recommend import recommend_batch
    from recsys.batch import progress_wanted

    rows = recommend_batch(args.bundle, args.users, args.out, k=args.k, at=args.at,
                           surface=args.surface, workers=args.workers,
                           progress=progress_wanted(quiet=args.quiet, force=args.progress))
    if not args.quiet:
        print(f"wrote {rows:,} rows -> {args.out}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from pipelines.evaluate import evaluate_command

    evaluate_command(args)


def _cmd_gate(args: argparse.Namespace) -> int:
    from pipelines.gate import gate_command

    return gate_command(args)


def _cmd_serve(args: argparse.Namespace) -> None:
    from pipelines.serve import serve_command

    serve_command(args)


def _cmd_simulate(args: argparse.Namespace) -> None:
    from pipelines.simulate import simulate_command

    simulate_command(args)


def _cmd_experiment(args: argparse.Namespace) -> None:
    from pipelines.experiment import experiment_plan_command, experiment_report_command

    if args.action == "report":
        experiment_report_command(args)
    else:
        experiment_plan_command(args)


def _cmd_events(args: argparse.Namespace) -> None:
    from recsys.errors import DataError
    from serving.event_store import is_postgres_url, open_store

    if not is_postgres_url(args.store) and not Path(args.store).is_file():
        raise DataError(f"event store {args.store} does not exist")
    with open_store(args.store) as store:
        summary = store.export_events(args.out)
    print(f"exported {summary.events:,} events -> {summary.path} (left out: "
          f"{summary.skipped_impressions:,} impressions, {summary.skipped_anonymous:,} "
          "anonymous events)")
    print("note: this export is a copy outside the event store; erasing a user "
          "(DELETE /v1/users/{id}) does not reach it: delete or re-export it after erasures")


def _cmd_models(args: argparse.Namespace) -> None:
    from pipelines.models import models_command

    models_command(args)


def _cmd_retrain(args: argparse.Namespace) -> int:
    from pipelines.retrain import retrain_command

    return retrain_command(args)


def _cmd_monitor(args: argparse.Namespace) -> int:
    from pipelines.monitor import monitor_command

    return monitor_command(args)


def _cmd_demo(args: argparse.Namespace) -> None:
    from pipelines.demo import run_demo

    run_demo(Path(args.out), users=args.users, items=args.items, days=args.days, seed=args.seed,
             serve=args.serve, host=args.host, port=args.port, simulate_users=args.simulate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys", description="Hybrid e-commerce recommender: data, training, evaluation, "
        "serving and A/B experiments.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int | None], help_: str
            ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("demo", _cmd_demo, "the whole product on the built-in synthetic shop: generate, "
            "validate, evaluate (a backtest, HTML report), train, serve with an A/B experiment")
    p.add_argument("--out", default="runs/demo", help="working directory (default: runs/demo)")
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--items", type=int, default=1500)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-serve", dest="serve", action="store_false",
                   help="stop after training the served bundle instead of serving")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--simulate", type=int, default=0, metavar="USERS",
                   help="run simulated shoppers against the server, then print the A/B readout")

    p = add("generate", _cmd_generate, "generate a synthetic shop (events, items, ground truth)")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--items", type=int, default=1500)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=42)

    p = add("train", _cmd_train, "train popularity, ALS, the content model and the hybrid "
            "ranker; write a versioned bundle")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--config", help="pipeline TOML (default: built-in defaults; see configs/)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--engine", choices=("pandas", "spark"), default="pandas",
                   help="where the events are validated and deduplicated: pandas (default) or "
                   "spark (needs pip install -e '.[spark]' and Java 17/21); the models are "
                   "fitted in this process either way (docs/scaling.md)")
    p.add_argument("--spark-master", default="local[2]",
                   help="Spark master URL with --engine spark (default local[2]; e.g. "
                   "spark://host:7077)")
    p.add_argument("--driver-memory", default="4g",
                   help="Spark driver heap with --engine spark (default 4g)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes the fit uses at most, one thread each (default: every "
                   "core; the bundle is the same whatever N)")

    p = add("recommend", _cmd_recommend, "batch top-k lists for a file of user ids (CSV out)")
    p.add_argument("--bundle", required=True, help="bundle directory from `recsys train`")
    p.add_argument("--users", required=True, help="file with one user id per line")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--at", help="recommend as of this time (ISO 8601; default: now)")
    p.add_argument("--surface", default="for_you",
                   help="the list to fill: for_you (default; repeats and discoveries as the "
                   "ranker orders them), buy_again (only items bought before) or discover "
                   "(only items new to the shopper)")
    p.add_argument("--out", required=True, help="CSV to write (user_id, rank, item_id, score)")

    from pipelines.cli_args import add_batch_arguments, add_evaluate_arguments, add_gate_arguments
    from pipelines.serve import add_arguments as serve_arguments

    add_batch_arguments(p)

    p = add("evaluate", _cmd_evaluate, "backtest: fit before a cutoff, recommend at it, score "
            "what shoppers bought after; hybrid vs the strong simple baselines, with intervals, "
            "segments and an HTML report")
    add_evaluate_arguments(p)

    p = add("gate", _cmd_gate, "deployment gate: pass (exit 0) or fail (exit 1) a candidate "
            "bundle against the champion")
    add_gate_arguments(p)

    p = add("serve", _cmd_serve, "run the HTTP API (FastAPI + uvicorn) on a bundle")
    serve_arguments(p)

    from pipelines.experiment import add_plan_arguments, add_report_arguments
    from pipelines.simulate import add_arguments as simulate_arguments

    p = add("simulate", _cmd_simulate, "drive a running API with simulated shoppers from a "
            "synthetic shop's ground truth (impressions, clicks, carts, purchases)")
    simulate_arguments(p)

    p = add("experiment", _cmd_experiment, "A/B experiment readout and sample-size planning")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_report_arguments(actions.add_parser(
        "report", help="readout of an experiment from the event store (HTML + JSON)"))
    add_plan_arguments(actions.add_parser(
        "plan", help="units needed per variant for a baseline rate and an MDE"))

    p = add("events", _cmd_events, "event store tools: export the served events as a dataset")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = actions.add_parser("export", help="canonical events.parquet from the event store "
                           "(outside erasure's reach)")
    e.add_argument("--store", required=True, help="the event store: a SQLite file (e.g. "
                   "var/events.db) or a postgresql:// URL")
    e.add_argument("--out", required=True, help="directory for events.parquet")

    from pipelines.models import add_arguments as models_arguments
    from pipelines.monitor import add_arguments as monitor_arguments
    from pipelines.retrain import add_arguments as retrain_arguments

    p = add("models", _cmd_models, "the model registry: list versions, register a bundle, "
            "promote a version to champion, roll back to the previous champion")
    models_arguments(p)

    p = add("retrain", _cmd_retrain, "train a candidate on the original data plus the event "
            "store's events, gate it against the champion, register it, promote it on a pass "
            "(once, or every INTERVAL as a long-lived loop)")
    retrain_arguments(p)

    p = add("monitor", _cmd_monitor, "drift and health of live traffic against the training "
            "snapshot: JSON and an HTML report with plots (exit 1 when an alert fires)")
    monitor_arguments(p)

    p = add("validate", _cmd_validate, "validate a dataset directory against the data contract")
    p.add_argument("directory", help="dataset directory (events.* and items.*)")
    p.add_argument("--report", help="where to save the JSON report (default: DIR/validation.json)")
    p.add_argument("--now", help="drop events after this time (default: the current time)")

    from pipelines.prepare_events import add_arguments as prepare_arguments

    p = add("prepare", _cmd_prepare, "validate and aggregate events (matrix, item statistics, "
            "co-occurrence) on pandas or Spark; optionally save the aggregates")
    prepare_arguments(p)

    p = add("import", _cmd_import, "import a public dataset format into the canonical form")
    fmt = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    f = fmt.add_parser("online-retail", help="UCI Online Retail CSV (.csv or .csv.gz)")
    f.add_argument("path")
    f.add_argument("--out", required=True)
    f = fmt.add_parser("movielens", help="MovieLens 100K directory (u.data, u.item)")
    f.add_argument("path")
    f.add_argument("--out", required=True)
    f = fmt.add_parser("csv", help="any CSV/Parquet event log, with a TOML mapping file")
    f.add_argument("path")
    f.add_argument("--mapping", required=True, help="TOML mapping (see configs/mappings/)")
    f.add_argument("--items", help="optional items file (CSV/Parquet) in canonical form")
    f.add_argument("--out", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except RecsysError as exc:
        if args.debug:
            raise
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
