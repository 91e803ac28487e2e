#!/usr/bin/env python3
"""Run the experiment set and write the paper's tables and figures (``boxseg.experiments``).

usage: python experiments/run.py [--config experiments/experiments.yaml] [--cores 2]
                                 [--training-threads N] [--tables-only] [--dry-run] [--unlock]
                                 [--rerun-triggers mtime input ...]
"""

import sys

from boxseg.experiments import main

if __name__ == "__main__":
    sys.exit(main())
