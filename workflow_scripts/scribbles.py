from boxseg.steps.baselines import scribbles_case
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: scribbles_case(
        s.wildcards.case, s.input.label, s.output[0], erosion_mm=s.params.erosion_mm
    ),
)
