from boxseg.steps.train import train_model
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: train_model(
        s.input.training_set,
        s.output.model,
        s.output.loss,
        method=s.params.method,
        settings=s.params.settings,
        threads=s.threads,
        device=s.params.device,
        checkpoint=s.params.checkpoint,
        rounds=s.params.get("rounds", 1),
    ),
)
