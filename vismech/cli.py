"""The `vismech` command: run (Hydra), list, leaderboard, validate, verify, cache, zoo.

User errors (unknown names, bad values, bad files) print one line and exit with code 2, without a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from importlib.resources import files
from pathlib import Path

from .errors import UnknownNameError, VismechError, from_os_error

USAGE = """usage: vismech COMMAND [ARGS]

commands:
  run [-m] [KEY=VALUE ...]     run a benchmark (Hydra overrides, e.g. task=... method=... model=...; -m sweeps)
  list [tasks|methods|models|metrics]
                               what is registered, one line each
  leaderboard [--results DIR] [--out FILE] [--site DIR] [--no-site] [--cache DIR] [--check]
                               regenerate leaderboard.md and the static site (docs/leaderboard/) from result records
  validate RECORD.json|FOLDER ...
                               check result records: schema, and summaries recomputed from their items
  verify [--limit N] RECORD.json|FOLDER ...
                               re-run each record's config and check its numbers (exit 1 on a mismatch)
  cache ls | cache gc [--older-than DAYS] [--all]
                               the generated-image cache: size, and clean-up of unfinished writes or old images
  zoo build [NAME ...]         retrain mini-zoo models by their recipes
  zoo ls                       the mini zoo's manifest
  zoo cards                    regenerate docs/zoo.md, the model cards
"""
GROUPS = ("task", "method", "model", "logger", "trainer", "experiment")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one VismechError line (exit 2), not usage text and a second line."""

    def error(self, message: str):
        raise VismechError(f"{self.prog}: {message}")

OVERRIDE = re.compile(r"^[+~]{0,2}(?P<key>[A-Za-z_][\w.]*)=(?P<value>.*)$")


def config_dir() -> Path:
    return Path(str(files("vismech.configs")))


def group_options(group: str) -> list[str]:
    """Choices of a config group: its yaml files, plus registered methods that ship no yaml (plugins)."""
    folder = config_dir() / group
    names = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    if group == "method":
        from .registry import METHODS

        names |= set(METHODS.names())
    return sorted(names)


def check_overrides(args: list[str]) -> None:
    """Fail early, in one line, on an unknown group choice (Hydra would print a long error and exit 1)."""
    for arg in args:
        match = OVERRIDE.match(arg)
        if not match or match["key"] not in GROUPS or arg.startswith("~"):
            continue
        options = group_options(match["key"])
        for value in match["value"].split(","):
            value = value.strip()
            if value and value != "null" and value not in options:
                raise UnknownNameError(match["key"], value, options)


def check_composition(args: list[str]):
    """Compose the config once before Hydra runs, so that a bad override is one line and exit code 2.

    Sweeps are checked with their first value (group choices were all checked above); `hydra.*` keys only exist
    inside Hydra's own run and are left to it.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    def one_line(exc: Exception) -> str:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return " ".join(lines[:2])

    plain = [a for a in args if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(plain)
    except HydraException as exc:
        raise VismechError(f"bad override: {one_line(exc)}") from None
    single = []
    for override, raw in zip(parsed, plain):
        if override.key_or_group == "hydra" or override.key_or_group.startswith("hydra."):
            continue
        if override.is_sweep_override():
            raw = f"{raw.split('=', 1)[0]}={next(iter(override.sweep_string_iterator()))}"
        single.append(raw)
    with initialize_config_dir(str(config_dir()), version_base="1.3", job_name="check"):
        try:
            return compose("config", overrides=single)
        except (HydraException, OmegaConfBaseException) as exc:
            raise VismechError(f"bad override: {one_line(exc)}") from None


def _store_plugin_method_configs() -> None:
    """Give registered methods without a yaml (installed plugins) a config node built from their typed Config."""
    from hydra.core.config_store import ConfigStore

    from .registry import METHODS

    have_yaml = {p.stem for p in (config_dir() / "method").glob("*.yaml")}
    store = ConfigStore.instance()
    for entry in METHODS.entries():
        if entry.name not in have_yaml:
            store.store(group="method", name=entry.name,
                        node={"name": entry.name, "config": dataclasses.asdict(entry.obj.Config())})


def cmd_run(args: list[str]) -> int:
    import hydra

    from .runner import preflight

    check_overrides(args)
    _store_plugin_method_configs()
    composed = check_composition(args)
    preflight(composed)  # before Hydra makes a run folder: a user error leaves nothing behind
    runs = Path(composed.paths.runs_dir).absolute()
    runs_existed = runs.exists()
    failed: list[Path] = []

    def task_function(cfg) -> None:
        from .results import format_estimate
        from .runner import execute

        try:
            outcome = execute(cfg, results_checked=cfg.paths.results_dir == composed.paths.results_dir)
        except (VismechError, OSError) as exc:
            error = exc if isinstance(exc, VismechError) else from_os_error(exc)
            if error is None:
                raise
            failed.append(_hydra_output_dir())
            print(f"vismech: error: {error}", file=sys.stderr)
            sys.exit(2)
        if outcome is not None:
            point = outcome.record.headline_point()
            if point is None:
                print(f"{outcome.record.method.name}: no point within budget -> {outcome.path}")
            else:
                head = point.metrics[outcome.record.primary_metric]
                print(f"{outcome.record.method.name}: {head.name} = {format_estimate(head)} -> {outcome.path}")

    main = hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(task_function)
    saved = sys.argv
    # Lightning's DDP launcher starts ranks 1.. as `python <sys.argv[0]> <sys.argv[1:]>` (or `python -m <main
    # module> ...`): argv[0] must stay the real program and the rest Hydra's overrides; `main` turns that call
    # back into `run` (`_ddp_child`)
    sys.argv = [saved[0] if saved else "vismech", *args]
    try:
        main()
    finally:
        sys.argv = saved
        for folder in failed:
            _drop_run_folder(folder, runs, runs_existed)
    return 0


def _hydra_output_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir).absolute() if HydraConfig.initialized() else None


def _drop_run_folder(folder: Path | None, runs: Path, runs_existed: bool) -> None:
    """A run that stopped on a user error leaves no run folder: its logs, and the folders above it that it alone
    made, up to `paths.runs_dir` (kept when it was there before)."""
    import contextlib
    import shutil

    if folder is None or not folder.is_relative_to(runs):
        return
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if not parent.is_relative_to(runs) or (parent == runs and runs_existed):
            break
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty


def cmd_list(args: list[str]) -> int:
    from .registry import METHODS, METRICS, MODELS, TASKS

    registries = {"tasks": TASKS, "methods": METHODS, "models": MODELS, "metrics": METRICS}
    wanted = args or list(registries)
    for name in wanted:
        if name not in registries:
            raise UnknownNameError("list section", name, registries)
    for name in wanted:
        print(f"{name}:")
        for entry in registries[name].entries():
            extra = ""
            if name == "methods":
                extra = f" [{', '.join(entry.obj.tasks)}]" + (" (control)" if entry.obj.control else "")
            if name == "metrics":
                extra = f" [{entry.obj.direction} is better; {entry.obj.units}]"
            source = "" if entry.source == "vismech" else f" (plugin: {entry.source})"
            print(f"  {entry.name:<24} {entry.summary}{extra}{source}")
    return 0


def cmd_leaderboard(args: list[str]) -> int:
    from . import leaderboard

    parser = ArgumentParser(prog="vismech leaderboard")
    parser.add_argument("--results", default="results", help="folder of result records (default: results)")
    parser.add_argument("--out", default=None,
                        help="file to write (default: leaderboard.md beside the results folder)")
    parser.add_argument("--site", default=None,
                        help=f"folder of the static site to write (default: {SITE} beside the --out file)")
    parser.add_argument("--no-site", action="store_true", help="write leaderboard.md only")
    parser.add_argument("--cache", default=".vismech-cache",
                        help="cache folder whose generated images become the site's thumbnails (default: .vismech-cache)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file or site is out of date, write nothing")
    opts = parser.parse_args(args)
    board = leaderboard.collect(opts.results)
    # another folder's board goes beside it, never over this checkout's leaderboard.md
    out = Path(opts.out) if opts.out is not None else Path(opts.results).parent / "leaderboard.md"
    files = leaderboard.outputs(board, out)
    site_dir = None if opts.no_site else Path(opts.site) if opts.site else out.parent / SITE
    site = _site(board, site_dir, opts.cache) if site_dir is not None else None
    pictures = f"{len(files) - 1} pictures" + ("" if site is None else f" and {site_dir}")
    if opts.check:
        from .site import stale

        differ = [str(p) for p, text in files.items() if not p.is_file() or p.read_text() != text]
        differ += [f"{site_dir}/{name}" for name in stale(site, site_dir)] if site is not None else []
        if differ:
            print(f"out of date: {', '.join(differ[:5])}{' ...' if len(differ) > 5 else ''}: run "
                  f"`vismech leaderboard`", file=sys.stderr)
            return 1
        print(f"{out} and its {pictures} are up to date")
        return 0
    leaderboard.write_files(files)
    if site is not None:
        from .site import write

        write(site, site_dir)
    print(f"wrote {out} and its {pictures}" + ("" if site is None else
                                               f" ({len(site.files)} files, {site.size() / 2**20:.1f} MiB)"))
    return 0


SITE = "docs/leaderboard"


def _site(board, folder: Path, cache: str):
    """The site of `board`; thumbnails come from the cache, else from the site in `folder` that it replaces."""
    from .site import build

    pictures = Path("docs/img")
    return build(board, cache_dir=cache, previous=folder, pictures=pictures if pictures.is_dir() else None)


def cmd_validate(args: list[str]) -> int:
    from .results import expand_record_paths, load_record

    if not args:
        raise VismechError("validate needs at least one RECORD.json (or a folder of them)")
    for path in expand_record_paths(args):
        record = load_record(path)
        print(f"{path}: valid (schema {record.schema_version}, task {record.task}, method {record.method.name})")
    return 0


def cmd_verify(args: list[str]) -> int:
    import time

    from .results import expand_record_paths, load_record
    from .verify import check_rerunnable, table, verify

    parser = ArgumentParser(prog="vismech verify", description="re-run records' configs and check their numbers")
    parser.add_argument("records", nargs="+", metavar="RECORD.json|FOLDER")
    parser.add_argument("--limit", type=int, default=None,
                        help="re-run only the first N items (set-level metrics are then skipped)")
    opts = parser.parse_args(args)
    if opts.limit is not None and opts.limit < 1:
        raise VismechError(f"--limit must be >= 1, got {opts.limit}")
    paths = expand_record_paths(opts.records)
    for path in paths:  # every record is read and checked before the first re-run
        check_rerunnable(path, load_record(path))
    failed = []
    for path in paths:
        started = time.perf_counter()
        result, written = verify(path, limit=opts.limit)
        print(f"{path}:\n{table(result)}")
        if not written:
            print("a full verification of this record is kept; this partial check was not written over it")
        print(f"({time.perf_counter() - started:.1f} s)")
        if not result.passed:
            failed.append(path)
    if len(paths) > 1:
        print(f"verified {len(paths) - len(failed)} of {len(paths)} records" +
              (f"; MISMATCH: {', '.join(map(str, failed))}" if failed else ""))
    _refresh_leaderboard([str(p) for p in paths])
    return 1 if failed else 0


def _refresh_leaderboard(record_paths: list[str]) -> None:
    """Regenerate leaderboard.md when the verified records are this checkout's, so their rows show the outcome."""
    from . import leaderboard

    results, board = Path("results").resolve(), Path("leaderboard.md")
    if board.is_file() and all(Path(p).resolve().is_relative_to(results) for p in record_paths):
        leaderboard.write(results, board)
        if (Path(SITE) / "index.html").is_file():
            from .site import write

            write(_site(leaderboard.collect(results), Path(SITE), ".vismech-cache"), SITE)


def cmd_cache(args: list[str]) -> int:
    from .generations import GenerationCache

    parser = ArgumentParser(prog="vismech cache", description="the generated-image cache")
    parser.add_argument("action", choices=("ls", "gc"))
    parser.add_argument("--dir", default=".vismech-cache", help="cache folder (default: .vismech-cache)")
    parser.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                        help="gc: also delete images not read for DAYS days")
    parser.add_argument("--all", action="store_true", help="gc: delete every cached image")
    opts = parser.parse_args(args)
    if Path(opts.dir).exists() and not Path(opts.dir).is_dir():
        raise VismechError(f"--dir '{opts.dir}' is a file; give the cache folder (default: .vismech-cache)")
    cache = GenerationCache(opts.dir)
    if opts.action == "gc":
        if opts.older_than is not None and opts.older_than < 0:
            raise VismechError(f"--older-than must be >= 0 days, got {opts.older_than}")
        print(f"removed {cache.gc(opts.older_than, opts.all)} file(s) from {cache.root}")
    stats = cache.stats()
    print(f"{cache.root}: {stats.images} images, {stats.bytes / 2**20:.1f} MiB, {stats.partial} unfinished writes")
    root = Path(opts.dir)
    findings = len(list((root / "findings").glob("*/*/finding.json")))
    runs = [p for p in (root / "progress").glob("*") if p.is_dir()]
    batches = sum(len(list(p.glob("*.safetensors"))) for p in runs)
    print(f"{root / 'findings'}: {findings} findings; {root / 'progress'}: {len(runs)} interrupted run(s) with "
          f"{batches} finished batches (re-run the same command to resume)")
    return 0


def cmd_zoo(args: list[str]) -> int:
    if not args or args[0] not in ("build", "ls", "cards"):
        raise VismechError("usage: vismech zoo build [NAME ...] | vismech zoo ls | vismech zoo cards")
    from . import zoo
    from .io import atomic_write_text
    from .zoo import cards

    if args[0] == "cards":
        for path in cards.save_pictures():
            print(f"wrote {path}")
        atomic_write_text(cards.CARDS, cards.render())
        print(f"wrote {cards.CARDS}")
        return 0

    if args[0] == "ls":
        from .zoo.manifest import read_manifest

        manifest = read_manifest()
        for name in sorted(zoo.RECIPES):
            entry = manifest.get(name)
            state = (f"{entry['size_bytes'] / 2**20:.1f} MiB, quality {entry['quality']}" if entry else "not built")
            print(f"  {name:<16} {state}")
        return 0
    from .runner import progress_enabled
    from .zoo.build import build

    for name in args[1:] or sorted(zoo.RECIPES):
        entry = build(name, progress=progress_enabled())
        print(f"built {name}: quality {entry['quality']}, {entry['train_time_s']} s")
    cards.save_pictures()
    atomic_write_text(cards.CARDS, cards.render())
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "leaderboard": cmd_leaderboard, "validate": cmd_validate,
            "verify": cmd_verify, "cache": cmd_cache, "zoo": cmd_zoo}


def _ddp_child(argv: list[str]) -> bool:
    """A rank > 0 started by Lightning's DDP launcher: it repeats the command line without the word `run`."""
    return (os.environ.get("LOCAL_RANK", "0") != "0" and bool(argv) and argv[0] not in COMMANDS
            and (argv[0].startswith("-") or "=" in argv[0]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if _ddp_child(argv):
        argv = ["run", *argv]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command not in COMMANDS:
            raise UnknownNameError("command", command, COMMANDS)
        return COMMANDS[command](rest)
    except VismechError as exc:
        print(f"vismech: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a full disk or a read-only folder anywhere: one line naming the path
        error = from_os_error(exc)
        if error is None:
            raise
        print(f"vismech: error: {error}", file=sys.stderr)
        return error.exit_code
    except SystemExit as exc:  # Hydra and argparse exit this way; keep their codes for in-process callers
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


if __name__ == "__main__":
    sys.exit(main())
