from boxseg.pipeline import predict_roi
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: predict_roi(
        s.wildcards.case, s.input.image, s.input.models, s.output, threads=s.threads, device=s.params.device
    ),
)
