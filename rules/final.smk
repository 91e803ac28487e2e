rule final_training_set:
    """The files the final model of a method trains on, with their content digests."""
    input:
        unpack(final_training_inputs),
    output:
        L.TRAINING_SET,
    log:
        "logs/training_set/{method}.log",
    localrule: True
    conda:
        "../envs/boxseg.yaml"
    script:
        "../workflow_scripts/training_set.py"


rule train_final:
    """Stage 3: the final 3D UNet of a method on all training cases (see
    final_training_inputs: weak and its ablations, or full on the true masks)."""
    input:
        training_set=L.TRAINING_SET,
    output:
        model=L.MODEL,
        loss=L.LOSS,
    log:
        "logs/train_final/{method}.log",
    benchmark:
        L.TRAIN_FINAL_BENCHMARK
    conda:
        "../envs/boxseg.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        settings=final_settings,
        rounds=lambda wc: rounds(RECIPE[wc.method], config),
        device=config["device"],
        method=lambda wc: RECIPE[wc.method].name,
        checkpoint=lambda wc: L.CHECKPOINT.format(method=wc.method),
    script:
        "../workflow_scripts/train.py"


rule infer:
    """Final model on a test or new case; mask on the case's original image grid, post-processed."""
    input:
        roi=L.ROI_IMAGE,
        image=image_of,
        boxes=L.BOXES,
        model=model_of,
    output:
        probability=L.PROBABILITY_ROI,
        raw=L.MASK_RAW,
        mask=L.MASK,
        probability_original=L.PROBABILITY,
        lesions=L.LESIONS,
        lesion_table=L.LESION_TABLE,
        markups=L.BOX_MARKUPS,
    log:
        "logs/infer/{method}/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    threads: 1
    resources:
        gpu=INFERENCE_GPU,
    params:
        postprocess=config["final"]["postprocess"],
        flip_tta=config["final"]["flip_tta"],
        threshold=config["final"]["threshold"],
        device=config["device"],
    script:
        "../workflow_scripts/infer.py"


rule dicom_seg:
    """The final mask as a DICOM SEG (highdicom) over the case's DICOM series, read back to check."""
    input:
        mask=L.MASK,
        image=image_of,
    output:
        L.DICOM_SEG,
    log:
        "logs/dicom_seg/{method}/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    script:
        "../workflow_scripts/dicom_seg.py"


rule predict:
    """Target: masks of the cases to predict (split 'predict', e.g. --config predict_sheet=PATH)."""
    input:
        expand(
            L.MASK,
            method=METHODS,
            case=PREDICT,
        ),
        expand(L.DICOM_SEG, method=METHODS, case=dicom_cases(PREDICT)),
