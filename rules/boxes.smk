rule box:
    """Weak label: the 3D box of each lesion enlarged by margin_mm, clipped to the image."""
    input:
        image=image_of,
        label=label_of,
    output:
        "results/boxes/{case}.json",
    log:
        "logs/box/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        margin_mm=config["boxes"]["margin_mm"],
        tumor_values=TUMOR,
    script:
        "../workflow_scripts/box.py"
