rule phantom:
    """Embedded default: one seeded synthetic CT phantom case in KiTS layout."""
    output:
        image="results/data/{case}/imaging.nii.gz",
        label="results/data/{case}/segmentation.nii.gz",
    params:
        seed=lambda wc: config["dataset"]["synthetic_seed"] + int(wc.case.split("_")[-1]),
    log:
        "logs/phantom/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    script:
        "../workflow_scripts/phantom.py"


rule case_sheet:
    """The case sheet the workflow runs on (case, image, label, split, group)."""
    output:
        "results/cases.tsv",
    params:
        sheet=lambda wc: CASES.assign(
            group=[GROUP_OF.get(c, "") for c in CASES["case"]]
        ),
    log:
        "logs/case_sheet.log",
    conda:
        "../envs/boxseg.yaml"
    script:
        "../workflow_scripts/case_sheet.py"
