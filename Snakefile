from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# the report opens on what the run achieved (results/overview.rst, written by the overview
# rule) once it exists, else on the workflow's description
FRONT_PAGE = Path("results/overview.rst").resolve()


report: str(FRONT_PAGE) if FRONT_PAGE.exists() else "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/preprocess.smk"
include: "rules/pseudomask.smk"
include: "rules/group.smk"
include: "rules/baselines.smk"
include: "rules/final.smk"
include: "rules/evaluate.smk"


rule all:
    default_target: True
    input:
        final_targets(),
