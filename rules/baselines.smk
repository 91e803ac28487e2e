rule scribbles:
    """Constrained-CNN baseline: the reference lesion eroded per axial slice (partial labels)."""
    input:
        label=L.ROI_LABEL,
    output:
        L.SCRIBBLES,
    log:
        "logs/scribbles/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        erosion_mm=config["baselines"]["ccnn"]["erosion_mm"],
    script:
        "../workflow_scripts/scribbles.py"


rule sdi_labels:
    """SDI baseline: 2D boxes on each axial slice of the lesion and their initial labels."""
    input:
        image=L.ROI_IMAGE,
        label=L.ROI_LABEL,
    output:
        labels=L.SDI_LABELS,
        boxes=L.SDI_BOXES,
    log:
        "logs/sdi_labels/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    threads: 1
    params:
        margin_mm=config["boxes"]["margin_mm"],
        crf=settings("crf"),
        inner_fraction=config["baselines"]["sdi"]["inner_fraction"],
        device=config["device"],
    script:
        "../workflow_scripts/sdi_labels.py"
