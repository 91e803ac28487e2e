from boxseg.steps.pseudo_mask import pseudo_mask_case
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: pseudo_mask_case(
        s.wildcards.case,
        s.input.image,
        s.input.boxes,
        s.input.geometry,
        s.output[0],
        crf_params=s.params.crf,
        threads=s.threads,
        device=s.params.device,
    ),
)
