rule phantoms:
    """Embedded default: the seeded synthetic CT phantom cases in KiTS layout, in one job
    (a second each; each case's seed is its own, so a case's files never change)."""
    output:
        images=expand(L.PHANTOM_IMAGE, case=SYNTHETIC),
        labels=expand(L.PHANTOM_LABEL, case=SYNTHETIC),
    log:
        "logs/phantoms.log",
    conda:
        "../envs/boxseg.yaml"
    threads: 2
    params:
        seeds=[
            config["dataset"]["synthetic_seed"] + int(c.split("_")[-1])
            for c in SYNTHETIC
        ],
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
