rule evaluate:
    """DSC, HD, HD95 and ASD (mm) of the prediction with and without the largest-component
    filter, and the DSC of the box itself; axial, coronal and sagittal slices through the lesion with reference (green), prediction (red) and box (yellow).
    """
    input:
        raw=L.MASK_RAW,
        prediction=L.MASK,
        image=image_of,
        label=label_of,
        boxes=L.BOXES,
    output:
        metrics=L.CASE_METRICS,
        overlay=report(
            L.CASE_OVERLAY,
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


rule evaluate_other_roi:
    """A research-mode test case scored again with its ROI placed the other way (on the organ
    where the run places it on the boxes, and the other way round): the labelled second row.
    """
    input:
        image=image_of,
        label=label_of,
        boxes=L.BOXES,
        model=model_of,
    output:
        L.CASE_METRICS_OTHER_ROI,
    log:
        "logs/evaluate_other_roi/{method}/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    threads: 1
    resources:
        gpu=INFERENCE_GPU,
    params:
        preprocess=settings("preprocess"),
        tumor_values=TUMOR,
        organ_values=ORGAN,
        flip_tta=config["final"]["flip_tta"],
        threshold=config["final"]["threshold"],
        device=config["device"],
    script:
        "../workflow_scripts/evaluate_other_roi.py"


rule summarise:
    """One row per test case and method, per method, ROI placement and post-processing the mean,
    sd and median of each score, and each method's DSC as a fraction of the fully supervised
    model's (when `full` runs).
    """
    input:
        metrics=expand(L.CASE_METRICS, method=METHODS, case=EVALUATED),
        other_roi=expand(L.CASE_METRICS_OTHER_ROI, method=METHODS, case=OTHER_ROI_CASES),
    output:
        metrics=report(
            L.METRICS,
            caption="../report/metrics.rst",
            category="Evaluation",
        ),
        summary=report(
            L.SUMMARY,
            caption="../report/summary.rst",
            category="Evaluation",
        ),
        comparison=report(
            L.COMPARISON,
            caption="../report/comparison.rst",
            category="Evaluation",
        ),
        other_roi=L.METRICS_OTHER_ROI,
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
            L.GROUP_LOSS,
            k=range(K) if FROM_BOXES else [],
        ),
        final=expand(L.LOSS, method=METHODS),
    output:
        report(
            L.LOSS_FIGURE,
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
        labels=expand(L.ROI_LABEL, case=TRAIN),
        boxes=expand(L.BOXES, case=TRAIN),
        geometry=expand(L.ROI_GEOMETRY, case=TRAIN),
        pseudo_masks=expand(L.PSEUDO_MASK, case=TRAIN),
        fusion=expand(L.FUSION_MASK, case=TRAIN if K > 0 else []),
        group=expand(
            L.GROUP_PREDICTION,
            case=TRAIN if K > 0 else [],
            k=range(K),
        ),
    output:
        report(
            L.LABEL_QUALITY,
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


rule overview:
    """The run's overview page: the scores as tables, the comparison with the fully supervised
    model, the training labels' quality, DSC against volume, curves and overlays."""
    input:
        cases=L.CASES,
        summary=L.SUMMARY,
        comparison=L.COMPARISON,
        metrics=L.METRICS,
        overlays=expand(L.CASE_OVERLAY, method=METHODS, case=EVALUATED),
        loss=[] if MODEL else L.LOSS_FIGURE,
        quality=L.LABEL_QUALITY if label_quality_wanted() else [],
    output:
        page=report(L.OVERVIEW, caption="../report/overview.rst", category="Overview"),
        front=L.OVERVIEW_RST,
    log:
        "logs/overview.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        methods=METHODS,
        what_ran=what_ran(),
    script:
        "../workflow_scripts/overview.py"
