from boxseg.report import overlay_figure
from boxseg.steps.evaluate import evaluate_case
from boxseg.workflow import run_step


def step(s):
    evaluate_case(
        s.wildcards.case,
        s.input.raw,
        s.input.image,
        s.input.label,
        s.input.boxes,
        s.output.metrics,
        tumor_values=s.params.tumor_values,
        method=s.wildcards.method,
    )
    overlay_figure(
        s.wildcards.case,
        s.input.image,
        s.input.label,
        s.input.prediction,
        s.output.metrics,
        s.output.overlay,
        tumor_values=s.params.tumor_values,
        window_hu=s.params.window_hu,
        postprocess=s.params.postprocess,
        boxes_path=s.input.boxes,
    )


run_step(snakemake, step)
