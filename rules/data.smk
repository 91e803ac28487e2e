rule phantom:
    """Embedded default: one seeded synthetic CT phantom case in KiTS layout."""
    output:
        image=L.PHANTOM_IMAGE,
        label=L.PHANTOM_LABEL,
    log:
        "logs/phantom/{case}.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        seed=lambda wc: config["dataset"]["synthetic_seed"]
        + int(wc.case.split("_")[-1]),
    script:
        "../workflow_scripts/phantom.py"


rule case_sheet:
    """The case sheet the workflow runs on (case, image, label, split, group)."""
    output:
        L.CASES,
    log:
        "logs/case_sheet.log",
    conda:
        "../envs/boxseg.yaml"
    params:
        sheet=lambda wc: CASES.assign(
            group=[GROUP_OF.get(c, "") for c in CASES["case"]]
        ),
    script:
        "../workflow_scripts/case_sheet.py"
