rule evaluate:
    """DSC, HD, HD95 and ASD (mm) of the prediction with and without the largest-component
    filter, and the DSC of the box itself; an axial overlay through the lesion with reference (green) and predicted (red) contours.
    """
    input:
        raw="results/predictions/{method}/{case}/mask_raw.nii.gz",
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
        postprocess=config["final"]["postprocess"],
    script:
        "../workflow_scripts/evaluate.py"


rule summarise:
    """One row per test case and method, per method the mean, sd and median of each score, and
    each method's DSC as a fraction of the fully supervised model's (when `full` runs).
    """
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
        comparison=report(
            "results/comparison.tsv",
            caption="../report/comparison.rst",
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
            "results/group/model_{k}/loss.tsv",
            k=range(K) if any(m.startswith("weak") for m in METHODS) else [],
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


rule label_quality:
    """Training-label quality (the paper's Table 3): DSC of boxes, pseudo-masks, group-model
    masks and fusion masks against the reference lesion, per training case, their mean, and
    each group model's mean over the training cases it did not see."""
    input:
        labels=expand("results/roi/{case}/label.nii.gz", case=TRAIN),
        boxes=expand("results/boxes/{case}.json", case=TRAIN),
        geometry=expand("results/roi/{case}/geometry.json", case=TRAIN),
        pseudo_masks=expand("results/pseudomasks/{case}.nii.gz", case=TRAIN),
        fusion=expand(
            "results/fusion/{case}/fusion.nii.gz", case=TRAIN if K > 0 else []
        ),
        group=expand(
            "results/group/predictions/{case}/model_{k}.nii.gz",
            case=TRAIN if K > 0 else [],
            k=range(K),
        ),
    output:
        report(
            "results/label_quality.tsv",
            caption="../report/label_quality.rst",
            category="Evaluation",
        ),
    log:
        "logs/label_quality.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        cases=TRAIN,
        k=K,
        group_of=GROUP_OF,
    script:
        "../workflow_scripts/label_quality.py"
