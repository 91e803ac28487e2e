from boxseg.overview import overview_page
from boxseg.workflow import run_step

run_step(snakemake, lambda s: overview_page(".", s.output[0], methods=s.params.methods, what_ran=s.params.what_ran))
