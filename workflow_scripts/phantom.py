from boxseg.phantom import write_phantom_case
from boxseg.workflow import run_step

run_step(snakemake, lambda s: write_phantom_case(s.params.seed, s.output.image, s.output.label))
