rule train_final:
    """Stage 3: the final 3D UNet on all training cases, with VWCE (or WCE)."""
    input:
        unpack(final_training_inputs),
    output:
        model="results/final/model.pt",
        loss="results/final/loss.tsv",
    log:
        "logs/train_final.log",
    benchmark:
        "results/benchmarks/train_final.tsv"
    conda:
        "../envs/boxseg.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        settings=settings("final_training"),
        device=config["device"],
        checkpoint="results/final/checkpoint.pt",
    script:
        "../workflow_scripts/train.py"


rule predict:
    """Final model on a test case; mask on the case's original image grid, post-processed."""
    input:
        roi="results/roi/{case}/image.nii.gz",
        image=image_of,
        model="results/final/model.pt",
    output:
        probability="results/predictions/{case}/probability_roi.nii.gz",
        mask="results/predictions/{case}/mask.nii.gz",
    log:
        "logs/predict/{case}.log",
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
        "../workflow_scripts/predict.py"
