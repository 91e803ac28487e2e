from boxseg.pipeline import evaluate_case
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: evaluate_case(
        s.wildcards.case,
        s.input.prediction,
        s.input.image,
        s.input.label,
        s.input.boxes,
        s.output[0],
        tumor_values=s.params.tumor_values,
    ),
)
