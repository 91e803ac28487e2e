rule pseudo_mask:
    """Stage 1: ConvCRF mean-field inference from the case's boxes."""
    input:
        image="results/roi/{case}/image.nii.gz",
        boxes="results/boxes/{case}.json",
        geometry="results/roi/{case}/geometry.json",
    output:
        "results/pseudomasks/{case}.nii.gz",
    log:
        "logs/pseudo_mask/{case}.log",
    benchmark:
        "results/benchmarks/pseudo_mask/{case}.tsv"
    conda:
        "../envs/boxseg.yaml"
    threads: 1
    params:
        crf=settings("crf") | settings("pseudo_mask_crf"),
        device=config["device"],
    script:
        "../workflow_scripts/pseudo_mask.py"
