from boxseg.report import summarise_metrics
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: summarise_metrics(
        s.input.metrics,
        s.output.metrics,
        s.output.summary,
        s.output.comparison,
        other_roi_paths=s.input.other_roi,
        out_other_roi=s.output.other_roi,
    ),
)
