from boxseg.report import loss_figure
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: loss_figure(
        list(s.input.groups), dict(zip(s.params.methods, s.input.final)), s.output[0]
    ),
)
