from boxseg.steps.infer import dicom_seg_case
from boxseg.workflow import run_step

run_step(snakemake, lambda s: dicom_seg_case(s.wildcards.case, s.input.mask, s.input.image, s.output[0]))
