from boxseg.steps.fuse import fuse_case
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: fuse_case(
        s.wildcards.case,
        s.input.image,
        s.input.pseudo_mask,
        s.input.models,
        s.input.boxes,
        s.input.geometry,
        s.output.predictions,
        s.output.fusion,
        s.output.weight,
        crf_params=s.params.crf,
        threshold=s.params.threshold,
        threads=s.threads,
        device=s.params.device,
        claim=bool(s.resources.get("gpu", 0)),  # claim a GPU where the rule declares one
    ),
)
