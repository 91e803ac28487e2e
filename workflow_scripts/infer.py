from boxseg.steps.infer import predict_case
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: predict_case(
        s.wildcards.case,
        s.input.roi,
        s.input.image,
        s.input.model,
        s.input.boxes,
        s.output.probability,
        s.output.raw,
        s.output.mask,
        postprocess=s.params.postprocess,
        flip_tta=s.params.flip_tta,
        threshold=s.params.threshold,
        threads=s.threads,
        device=s.params.device,
        claim=bool(s.resources.get("gpu", 0)),  # claim a GPU where the rule declares one
        extra={
            "probability": s.output.probability_original,
            "lesions": s.output.lesions,
            "lesion_table": s.output.lesion_table,
            "markups": s.output.markups,
        },
    ),
)
