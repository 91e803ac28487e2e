rule evaluate:
    """DSC, HD, HD95 and ASD (mm) of the prediction, and the DSC of the box itself."""
    input:
        prediction="results/predictions/{case}/mask.nii.gz",
        image=image_of,
        label=label_of,
        boxes="results/boxes/{case}.json",
    output:
        "results/metrics/{case}.tsv",
    log:
        "logs/evaluate/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        tumor_values=TUMOR,
    script:
        "../workflow_scripts/evaluate.py"


rule summarise:
    """One row per test case, and the mean, sd and median of each score."""
    input:
        expand("results/metrics/{case}.tsv", case=TEST),
    output:
        metrics=report(
            "results/metrics.tsv",
            caption="../report/metrics.rst",
            category="Evaluation",
        ),
        summary=report(
            "results/summary.tsv",
            caption="../report/summary.rst",
            category="Evaluation",
        ),
    log:
        "logs/summarise.log",
    conda:
        "../envs/boxseg.yaml"
    script:
        "../workflow_scripts/summarise.py"


rule overlay:
    """Axial slice through the lesion with reference (green) and predicted (red) contours."""
    input:
        image=image_of,
        label=label_of,
        prediction="results/predictions/{case}/mask.nii.gz",
        metrics="results/metrics/{case}.tsv",
    output:
        report(
            "results/figures/cases/{case}.png",
            caption="../report/overlay.rst",
            category="Test cases",
            labels={"case": "{case}"},
        ),
    log:
        "logs/overlay/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        tumor_values=TUMOR,
        window_hu=config["preprocess"]["window_hu"],
    script:
        "../workflow_scripts/overlay.py"


rule loss_curves:
    """Training loss per epoch of the group models and the final model."""
    input:
        groups=expand("results/group/model_{k}/loss.tsv", k=range(K)),
        final="results/final/loss.tsv",
    output:
        report(
            "results/figures/training_loss.png",
            caption="../report/loss.rst",
            category="Training",
        ),
    log:
        "logs/loss_curves.log",
    conda:
        "../envs/boxseg.yaml"
    script:
        "../workflow_scripts/loss_curves.py"
