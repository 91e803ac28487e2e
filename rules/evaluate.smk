rule evaluate:
    """DSC, HD, HD95 and ASD (mm) of the prediction and the DSC of the box itself; an axial
    overlay through the lesion with reference (green) and predicted (red) contours."""
    input:
        prediction="results/predictions/{method}/{case}/mask.nii.gz",
        image=image_of,
        label=label_of,
        boxes="results/boxes/{case}.json",
    output:
        metrics="results/metrics/{method}/{case}.tsv",
        overlay=report(
            "results/figures/cases/{method}/{case}.png",
            caption="../report/overlay.rst",
            category="Test cases",
            subcategory="{method}",
            labels={"case": "{case}", "method": "{method}"},
        ),
    log:
        "logs/evaluate/{method}/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        tumor_values=TUMOR,
        window_hu=config["preprocess"]["window_hu"],
    script:
        "../workflow_scripts/evaluate.py"


rule summarise:
    """One row per test case and method, and per method the mean, sd and median of each score."""
    input:
        expand("results/metrics/{method}/{case}.tsv", method=METHODS, case=EVALUATED),
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


rule loss_curves:
    """Training loss per epoch of the group models and each method's final model."""
    input:
        groups=expand(
            "results/group/model_{k}/loss.tsv", k=range(K) if "weak" in METHODS else []
        ),
        final=expand("results/models/{method}/loss.tsv", method=METHODS),
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
    params:
        methods=METHODS,
    script:
        "../workflow_scripts/loss_curves.py"
