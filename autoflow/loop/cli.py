"""``autoflow loop``: the self-optimizing loop, offline (``loop.offline``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from ..errors import AutoflowError, ConfigError


def loop(
    trace: str = typer.Option(..., help="Comma-separated trace SOURCES (FORMAT:PATH or "
                              "builtin:NAME), replayed one after the other: each starts "
                              "where the previous one's arrivals end."),
    window: str = typer.Option("2000", help="A window: a number of jobs (at least 10) or "
                               "a span of submit time such as 36h, 3d, 7200s. The loop "
                               "acts at the end of each."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for loop_report.json, "
                                 "timeline.png, the registry and each retraining's files."),
    cluster: str = typer.Option("itp-8gpu", help="The cluster (built-in name or file), "
                                "sized to --load over the whole replay."),
    load: float = typer.Option(1.0, help="Offered GPU load of the stitched replay (0: the "
                               "cluster as it is)."),
    champion: Path = typer.Option(None, help="The first champion: an adaptive model card "
                                  "(NAME.json from autoflow train). Default: the shipped "
                                  "one (autoflow/models/rl-default.json)."),
    db: str = typer.Option(None, help="Model registry store URL (sqlite:///PATH or "
                           "postgresql://...); default: a SQLite file in --out."),
    seed: int = typer.Option(0, help="Seed of every replay, draw and training."),
    teacher_episodes: int = typer.Option(12, help="Episodes of the window and its variants "
                                         "that train a challenger."),
    replays: int = typer.Option(3, help="Paired replays of the real window per comparison."),
    variants: int = typer.Option(4, help="Paired synthetic variants per comparison."),
    min_rows: int = typer.Option(50, help="Drift: fewest values per feature and window "
                                 "for a test (fewer: insufficient, never drift)."),
) -> None:
    """Replay workloads through the self-optimizing loop: windows, drift, retraining,
    champion vs challenger, hot swap; writes loop_report.json and timeline.png."""
    from dataclasses import replace

    from ..cli import err, fail, interrupted
    from ..limits import check_output_dir
    from .challenger import ChallengerConfig
    from .compare import CompareConfig
    from .drift import DriftConfig
    from .offline import SHIPPED, LoopConfig, parse_window, run_loop

    try:
        sources = [s.strip() for s in trace.split(",") if s.strip()]
        if not sources:
            raise ConfigError("--trace: name at least one SOURCE")
        parse_window(window)
        if load < 0 or (load and not 0.05 <= load <= 5.0):
            raise ConfigError(f"--load must be 0 or in [0.05, 5], got {load}")
        if seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {seed}")
        if not 1 <= teacher_episodes <= 1000:
            raise ConfigError(f"--teacher-episodes must be in [1, 1000], got {teacher_episodes}")
        champ = champion or SHIPPED
        if not Path(champ).is_file():
            raise ConfigError(f"--champion {champ}: no such file")
        from ..agents.adaptive import load as load_card
        load_card(champ)  # a bad card fails before any replay
        cfg = LoopConfig(sources=sources, out=str(out_dir), window=window, cluster=cluster,
                         load=load or None, champion=str(champ), seed=seed, db=db,
                         drift=DriftConfig(min_rows=min_rows),
                         challenger=replace(ChallengerConfig(), teacher_episodes=teacher_episodes),
                         compare=CompareConfig(replays=replays, variants=variants, seed=seed))
        check_output_dir(out_dir)
        run_loop(cfg, err, command="autoflow " + shlex.join(sys.argv[1:]))
    except KeyboardInterrupt as e:
        interrupted(e)
    except AutoflowError as e:
        fail(e)
