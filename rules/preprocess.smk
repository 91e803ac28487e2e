rule preprocess:
    """ROI around the lesion-bearing organ: resampled, HU-windowed, min-max normalised."""
    input:
        image=image_of,
        label=label_of,
        boxes="results/boxes/{case}.json",
    output:
        image="results/roi/{case}/image.nii.gz",
        label="results/roi/{case}/label.nii.gz",
        geometry="results/roi/{case}/geometry.json",
    log:
        "logs/preprocess/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        spacing_mm=config["preprocess"]["spacing_mm"],
        roi_size_mm=config["preprocess"]["roi_size_mm"],
        window_hu=config["preprocess"]["window_hu"],
        tumor_values=TUMOR,
        organ_values=ORGAN,
    script:
        "../workflow_scripts/preprocess.py"
