from boxseg.report import summarise_metrics
from boxseg.workflow import run_step

run_step(snakemake, lambda s: summarise_metrics(s.input, s.output.metrics, s.output.summary, s.output.comparison))
