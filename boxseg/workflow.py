"""Glue for ``workflow_scripts/``: logging to the rule's log, one-line errors."""

from __future__ import annotations

import logging
import sys

from boxseg.io import CaseError


def run_step(snakemake, step) -> None:
    """Run ``step(snakemake)`` with stderr and logging sent to the rule's log.

    A ``CaseError`` (bad input) ends the job with one line naming the case, the
    file and the problem, in the log and on the terminal (the job's stderr).
    """
    terminal = sys.stderr
    if snakemake.log:
        sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 (the job's stderr until it ends)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    try:
        step(snakemake)
    except CaseError as err:
        logging.getLogger("boxseg").error("%s", err)
        if terminal is not sys.stderr:
            print(f"ERROR {err}", file=terminal, flush=True)  # the one line, also where the user looks
        raise SystemExit(f"ERROR {err}") from None
