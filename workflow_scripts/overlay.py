from boxseg.report import overlay_figure
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: overlay_figure(
        s.wildcards.case,
        s.input.image,
        s.input.label,
        s.input.prediction,
        s.input.metrics,
        s.output[0],
        tumor_values=s.params.tumor_values,
        window_hu=s.params.window_hu,
    ),
)
