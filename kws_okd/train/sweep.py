"""Train many recipe runs, several at a time, safely next to other processes.

Each run is one composed recipe (name + overrides) with its own ``exp_dir``. Finished
runs (``model.pt``) are skipped, unfinished ones resume from their checkpoints, and a
``.lock`` file holding the trainer's pid keeps two processes from training the same run
(a lock whose process is gone is taken over). Used by ``tools/compare_methods.py``.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def take_lock(run_dir: Path) -> bool:
    """Create ``run_dir/.lock`` holding our pid; False while a live process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and pid_alive(holder):
                return False
            lock.unlink(missing_ok=True)  # left by a killed run, which will resume
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True
    return False


def train_run(recipe: str, overrides: list[str]) -> tuple[list[str], float | None, str]:
    """Train one run unless it is finished or taken. Returns the overrides, the training
    seconds (None when skipped) and the run folder."""
    from kws_okd.train.config import load_recipe
    from kws_okd.train.run import finished_run, train
    cfg = load_recipe(recipe, overrides)
    d = Path(cfg.exp_dir)
    if finished_run(cfg):
        return overrides, None, str(d)
    if not take_lock(d):
        print(f"[sweep] {d}: another process is training it; skipped", flush=True)
        return overrides, None, str(d)
    try:
        summary = train(cfg).parent / "train_summary.json"
        # The run's own count, which includes the seconds before a resume.
        return overrides, json.loads(summary.read_text())["train_seconds"], str(d)
    finally:
        (d / ".lock").unlink(missing_ok=True)


def read_progress(run_dir: Path) -> tuple[int, int] | None:
    """(steps done, steps in all) of a run in training, from its progress file."""
    from kws_okd.train.brain import PROGRESS_FILE
    try:
        done, total = (int(v) for v in (Path(run_dir) / PROGRESS_FILE).read_text().split())
    except (OSError, ValueError):
        return None
    return done, total


def one_thread(overrides: list[str]) -> list[str]:
    """``overrides`` with ``threads=1`` added, unless they set ``threads`` already."""
    return overrides if any(o.startswith("threads=") for o in overrides) else [*overrides, "threads=1"]


def train_runs(recipe: str, runs: list[list[str]], jobs: int = 1, log=print, progress: bool = False) -> None:
    """Train ``runs`` (override lists) in order, ``jobs`` at a time. With several jobs each
    run gets its own process (fresh global state) and one thread: on a small CPU two
    single-threaded runs get more done than one run with two threads. ``progress``: the
    runs show no bars of their own; one bar here counts the steps of all of them."""
    bar = dirs = None

    def report(overrides, secs, d):
        if secs is not None:
            (bar.write if bar is not None else log)(f"[sweep] {d}: trained in {secs:.0f} s")
    if jobs <= 1:
        for r in runs:
            report(*train_run(recipe, r))
        return
    runs = [one_thread(r) for r in runs]
    if progress:
        from tqdm import tqdm

        from kws_okd.train.config import load_recipe
        runs = [[*r, "progress=false"] for r in runs]
        dirs = [Path(load_recipe(recipe, r).exp_dir) for r in runs]
        bar = tqdm(total=0, unit="step", desc=f"training {len(runs)} runs, {jobs} at a time")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        pending = {pool.submit(train_run, recipe, r) for r in runs}
        while pending:
            done, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
            for f in done:
                report(*f.result())
            if bar is not None:
                seen = [p for p in map(read_progress, dirs) if p]
                if seen and sum(d for d, _ in seen) != bar.n:
                    # Runs not started yet count as long as the average started one.
                    bar.total = round(sum(t for _, t in seen) * len(runs) / len(seen))
                    bar.n = sum(d for d, _ in seen)
                    bar.set_postfix_str(f"{sum(d == t for d, t in seen)}/{len(runs)} runs done", refresh=False)
                    bar.refresh()
    if bar is not None:
        bar.close()
