from boxseg.steps.evaluate import evaluate_other_roi
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: evaluate_other_roi(
        s.wildcards.case,
        s.input.image,
        s.input.label,
        s.input.boxes,
        s.input.model,
        s.output[0],
        preprocess=s.params.preprocess,
        tumor_values=s.params.tumor_values,
        organ_values=s.params.organ_values,
        method=s.wildcards.method,
        flip_tta=s.params.flip_tta,
        threshold=s.params.threshold,
        threads=s.threads,
        device=s.params.device,
        claim=bool(s.resources.get("gpu", 0)),  # claim a GPU where the rule declares one
    ),
)
