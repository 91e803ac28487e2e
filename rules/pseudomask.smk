rule pseudo_mask:
    """Stage 1: ConvCRF mean-field inference from the case's boxes."""
    input:
        image=L.ROI_IMAGE,
        boxes=L.BOXES,
        geometry=L.ROI_GEOMETRY,
    output:
        L.PSEUDO_MASK,
    log:
        "logs/pseudo_mask/{case}.log",
    benchmark:
        L.PSEUDO_MASK_BENCHMARK
    conda:
        "../envs/boxseg.yaml"
    threads: 1
    params:
        crf=settings("crf") | settings("pseudo_mask_crf"),
        device=config["device"],
    script:
        "../workflow_scripts/pseudo_mask.py"
