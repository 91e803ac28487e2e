from boxseg.pipeline import write_training_set
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: write_training_set(
        s.input.images,
        s.input.targets,
        s.output[0],
        s.input.get("weights"),
        s.input.get("sizes"),
        s.input.get("boxes"),
    ),
)
