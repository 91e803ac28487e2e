rule final_training_set:
    """The files the final model of a method trains on, with their content digests."""
    input:
        unpack(final_training_inputs),
    output:
        "results/models/{method}/training_set.tsv",
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
        training_set="results/models/{method}/training_set.tsv",
    output:
        model="results/models/{method}/model.pt",
        loss="results/models/{method}/loss.tsv",
    log:
        "logs/train_final/{method}.log",
    benchmark:
        "results/benchmarks/train_final/{method}.tsv"
    conda:
        "../envs/boxseg.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        settings=final_settings,
        rounds=lambda wc: (
            config["baselines"]["sdi"]["rounds"] if wc.method == "sdi" else 1
        ),
        device=config["device"],
        checkpoint=lambda wc: f"results/models/{wc.method}/checkpoint.pt",
    script:
        "../workflow_scripts/train.py"


rule infer:
    """Final model on a test or new case; mask on the case's original image grid, post-processed."""
    input:
        roi="results/roi/{case}/image.nii.gz",
        image=image_of,
        boxes="results/boxes/{case}.json",
        model=model_of,
    output:
        probability="results/predictions/{method}/{case}/probability_roi.nii.gz",
        raw="results/predictions/{method}/{case}/mask_raw.nii.gz",
        mask="results/predictions/{method}/{case}/mask.nii.gz",
    log:
        "logs/infer/{method}/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        postprocess=config["final"]["postprocess"],
        flip_tta=config["final"]["flip_tta"],
        device=config["device"],
    script:
        "../workflow_scripts/infer.py"


rule predict:
    """Target: masks of the cases to predict (split 'predict', e.g. --config predict_sheet=PATH)."""
    input:
        expand(
            "results/predictions/{method}/{case}/mask.nii.gz",
            method=METHODS,
            case=PREDICT,
        ),
