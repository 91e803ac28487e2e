# Stage 2 exists only with K > 0 groups (K = 0: the final model trains on pseudo-masks).
if K > 0:

    rule group_training_set:
        """The files of group k's cases (ROI images, pseudo-masks) and their content digests."""
        input:
            unpack(lambda wc: training_inputs(GROUP, group_cases(wc.k))),
        output:
            L.GROUP_TRAINING_SET,
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
            training_set=L.GROUP_TRAINING_SET,
        output:
            model=L.GROUP_MODEL,
            loss=L.GROUP_LOSS,
        log:
            "logs/train_group/{k}.log",
        benchmark:
            L.TRAIN_GROUP_BENCHMARK
        conda:
            "../envs/boxseg.yaml"
        threads: 4
        resources:
            gpu=1,
        params:
            settings=settings("group_training"),
            device=config["device"],
            method=GROUP.name,
            checkpoint=lambda wc: L.GROUP_CHECKPOINT.format(k=wc.k),
        script:
            "../workflow_scripts/train.py"

    rule fuse:
        """Group models' masks P1..PK of a training case, fusion mask FM = ConvCRF(PM or P1 ... or PK)
        and weight map V = PM + sum Pk (0 -> K+1)."""
        input:
            image=L.ROI_IMAGE,
            pseudo_mask=L.PSEUDO_MASK,
            models=expand(L.GROUP_MODEL, k=range(K)),
            boxes=L.BOXES,
            geometry=L.ROI_GEOMETRY,
        output:
            predictions=expand(L.GROUP_PREDICTION, k=range(K), allow_missing=True),
            fusion=L.FUSION_MASK,
            weight=L.FUSION_WEIGHT,
        log:
            "logs/fuse/{case}.log",
        conda:
            "../envs/boxseg.yaml"
        threads: 1
        resources:
            gpu=INFERENCE_GPU,
        params:
            crf=settings("crf") | settings("fusion_crf"),
            threshold=config["fusion"]["threshold"],
            device=config["device"],
        script:
            "../workflow_scripts/fuse.py"
