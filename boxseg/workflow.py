"""Glue for ``workflow_scripts/``: logging to the rule's log, one-line errors, and a job
that stops, keeping its last checkpoint, when it is told to or when Snakemake is gone."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from boxseg.io import CaseError

WATCH_SECONDS = 2.0  # how often a job looks for the Snakemake that started it


class Stopped(BaseException):  # a stop, not an error: no "except Exception" catches it
    """The job was told to stop (SIGTERM), or the Snakemake that started it is gone."""


def _stop(signum: int, _frame: FrameType | None) -> NoReturn:
    raise Stopped("SIGTERM" if signum == signal.SIGTERM else signal.Signals(signum).name)


def _watch_parent(parent: int) -> None:
    """Stop this job when its parent, the Snakemake that started it, dies (``kill -9`` of
    Snakemake alone): no orphan goes on training beside the next run's job."""
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent:
            logging.getLogger("boxseg").error("Snakemake (process %d) is gone: stopping this job", parent)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _one_line(err: BaseException, snakemake: Any) -> str:
    """The error as the one line a user reads: a ``CaseError`` names the case, the file and
    the problem itself; an ``OSError`` (a full disk, an unwritable folder) gets the job's case."""
    if isinstance(err, CaseError):
        return str(err)
    case = getattr(snakemake.wildcards, "case", None)
    if isinstance(err, Stopped):
        where = (f"stopped ({err}); what it wrote in full is kept (training: its last checkpoint), "
                 "so the same command resumes it")
    else:
        where = f"{err.filename}: {err.strerror}" if getattr(err, "filename", None) else str(err)
    return f"case {case}: {where}" if case else where


def run_step(snakemake: Any, step: Callable[[Any], object]) -> None:
    """Run ``step(snakemake)`` with stderr and logging sent to the rule's log.

    A ``CaseError`` (bad input) ends the job with one line naming the case, the
    file and the problem, in the log and on the terminal (the job's stderr); so does an
    ``OSError`` (a full disk, a file that cannot be written), with the job's case, and a
    stop: SIGTERM, or the Snakemake that started the job gone (checked every
    ``WATCH_SECONDS``).
    """
    terminal = sys.stderr
    if snakemake.log:
        sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 (the job's stderr until it ends)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        step(snakemake)
    except (CaseError, OSError, Stopped) as err:
        line = _one_line(err, snakemake)
        logging.getLogger("boxseg").error("%s", line)
        if terminal is not sys.stderr:
            print(f"ERROR {line}", file=terminal, flush=True)  # the one line, also where the user looks
        raise SystemExit(f"ERROR {line}") from None
