from boxseg.io import write_text
from boxseg.workflow import run_step

run_step(snakemake, lambda s: write_text(s.params.sheet.to_csv(sep="\t", index=False), s.output[0]))
