from boxseg.steps.preprocess import box_map_case
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: box_map_case(s.wildcards.case, s.input.image, s.input.boxes, s.input.geometry, s.output[0]),
)
