from boxseg.pipeline import make_case_boxes
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: make_case_boxes(
        s.wildcards.case,
        s.input.image,
        s.input.label,
        s.output[0],
        margin_mm=s.params.margin_mm,
        tumor_values=s.params.tumor_values,
    ),
)
