def final_training_inputs(wildcards):
    """Fusion masks and weight maps (K > 0), or pseudo-masks alone (K = 0)."""
    inputs = {"images": expand("results/roi/{case}/image.nii.gz", case=TRAIN)}
    if K > 0:
        inputs["targets"] = expand("results/fusion/{case}/fusion.nii.gz", case=TRAIN)
        if config["final"]["loss"] == "vwce":
            inputs["weights"] = expand("results/fusion/{case}/weight.nii.gz", case=TRAIN)
    else:
        inputs["targets"] = expand("results/pseudomasks/{case}.nii.gz", case=TRAIN)
    return inputs


rule train_final:
    """Stage 3: the final 3D UNet on all training cases, with VWCE (or WCE)."""
    input:
        unpack(final_training_inputs),
    output:
        model="results/final/model.pt",
        loss="results/final/loss.tsv",
    params:
        settings=config["final_training"],
        device=config["device"],
        checkpoint="results/final/checkpoint.pt",
    threads: 4
    resources:
        gpu=1,
    log:
        "logs/train_final.log",
    benchmark:
        "results/benchmarks/train_final.tsv"
    conda:
        "../envs/boxseg.yaml"
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
    params:
        postprocess=config["final"]["postprocess"],
        device=config["device"],
    threads: 1
    resources:
        gpu=1,
    log:
        "logs/predict/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    script:
        "../workflow_scripts/predict.py"
