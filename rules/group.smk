# Stage 2 exists only with K > 0 groups (K = 0: the final model trains on pseudo-masks).
if K > 0:

    rule group_training_set:
        """The files of group k's cases (ROI images, pseudo-masks) and their content digests."""
        input:
            images=lambda wc: expand(
                "results/roi/{case}/image.nii.gz", case=group_cases(wc.k)
            ),
            targets=lambda wc: expand(
                "results/pseudomasks/{case}.nii.gz", case=group_cases(wc.k)
            ),
        output:
            "results/group/model_{k}/training_set.tsv",
        log:
            "logs/training_set/group_{k}.log",
        localrule: True
        conda:
            "../envs/boxseg.yaml"
        script:
            "../workflow_scripts/training_set.py"

    rule train_group:
        """Stage 2: one 3D UNet per disjoint subset, on its pseudo-masks, with WCE."""
        input:
            training_set="results/group/model_{k}/training_set.tsv",
        output:
            model="results/group/model_{k}/model.pt",
            loss="results/group/model_{k}/loss.tsv",
        log:
            "logs/train_group/{k}.log",
        benchmark:
            "results/benchmarks/train_group/{k}.tsv"
        conda:
            "../envs/boxseg.yaml"
        threads: 4
        resources:
            gpu=1,
        params:
            settings=settings("group_training"),
            device=config["device"],
            checkpoint=lambda wc: f"results/group/model_{wc.k}/checkpoint.pt",
        script:
            "../workflow_scripts/train.py"

    rule fuse:
        """Group models' masks P1..PK of a training case, fusion mask FM = ConvCRF(PM or P1 ... or PK)
        and weight map V = PM + sum Pk (0 -> K+1)."""
        input:
            image="results/roi/{case}/image.nii.gz",
            pseudo_mask="results/pseudomasks/{case}.nii.gz",
            models=expand("results/group/model_{k}/model.pt", k=range(K)),
            boxes="results/boxes/{case}.json",
            geometry="results/roi/{case}/geometry.json",
        output:
            predictions=expand(
                "results/group/predictions/{{case}}/model_{k}.nii.gz", k=range(K)
            ),
            fusion="results/fusion/{case}/fusion.nii.gz",
            weight="results/fusion/{case}/weight.nii.gz",
        log:
            "logs/fuse/{case}.log",
        conda:
            "../envs/boxseg.yaml"
        threads: 1
        resources:
            gpu=1,
        params:
            crf=settings("crf") | settings("fusion_crf"),
            threshold=config["fusion"]["threshold"],
            device=config["device"],
        script:
            "../workflow_scripts/fuse.py"
