from boxseg.pipeline import train_model
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: train_model(
        s.input.images,
        s.input.targets,
        s.output.model,
        s.output.loss,
        settings=s.params.settings,
        weight_paths=s.input.get("weights"),
        threads=s.threads,
        device=s.params.device,
        checkpoint=s.params.checkpoint,
    ),
)
