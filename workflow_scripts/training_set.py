from boxseg.steps.train import write_training_set
from boxseg.workflow import run_step

# input keys are the training set's columns + "s" (images, targets, and e.g. weights, sizes, boxes);
# iterating snakemake.input gives its files, so the names come from keys()
run_step(snakemake, lambda s: write_training_set({k.removesuffix("s"): list(s.input[k]) for k in s.input.keys()}, s.output[0]))  # noqa: SIM118
