from boxseg.steps.baselines import sdi_labels_case
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: sdi_labels_case(
        s.wildcards.case,
        s.input.image,
        s.input.label,
        s.output.labels,
        s.output.boxes,
        margin_mm=s.params.margin_mm,
        crf_params=s.params.crf,
        inner_fraction=s.params.inner_fraction,
        threads=s.threads,
        device=s.params.device,
    ),
)
