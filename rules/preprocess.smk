rule preprocess:
    """Boxes of the case (box table, box file, or drawn from the label's lesions by the
    research protocol), then the ROI: resampled, HU-windowed, min-max normalised."""
    input:
        unpack(case_inputs),
    output:
        boxes=L.BOXES,
        image=L.ROI_IMAGE,
        label=L.ROI_LABEL,
        geometry=L.ROI_GEOMETRY,
    log:
        "logs/preprocess/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        files=case_files,
        box_rows=lambda wc: BOX_ROWS.get(wc.case, []),
        needs_boxes=lambda wc: SPLIT[wc.case] == "train",
        margin_mm=config["boxes"]["margin_mm"],
        protocol=config["boxes"]["protocol"],
        box_seed=config["boxes"]["seed"],
        slack_mm=config["boxes"]["slack_mm"],
        roi_from=config["preprocess"]["roi_from"],
        spacing_mm=config["preprocess"]["spacing_mm"],
        roi_size_mm=config["preprocess"]["roi_size_mm"],
        window_hu=config["preprocess"]["window_hu"],
        tumor_values=TUMOR,
        organ_values=ORGAN,
    script:
        "../workflow_scripts/preprocess.py"


rule box_map:
    """A training case's boxes on its ROI grid (lesion ids), for the box losses."""
    input:
        image=L.ROI_IMAGE,
        boxes=L.BOXES,
        geometry=L.ROI_GEOMETRY,
    output:
        L.ROI_BOX_MAP,
    log:
        "logs/box_map/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    script:
        "../workflow_scripts/box_map.py"
