from boxseg.steps.evaluate import label_quality
from boxseg.workflow import run_step


def step(s):
    k = s.params.k
    group = {c: s.input.group[i * k : (i + 1) * k] for i, c in enumerate(s.params.cases)}
    label_quality(
        s.params.cases,
        s.input.labels,
        s.input.boxes,
        s.input.geometry,
        s.input.pseudo_masks,
        s.output[0],
        fusion_masks=list(s.input.fusion) or None,
        group_predictions=group if k else None,
        group_of=s.params.group_of,
    )


run_step(snakemake, step)
