from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


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
