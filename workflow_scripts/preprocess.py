from boxseg.pipeline import preprocess_case
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: preprocess_case(
        s.wildcards.case,
        s.input.image,
        s.input.label,
        s.input.boxes,
        s.output.image,
        s.output.label,
        s.output.geometry,
        spacing_mm=s.params.spacing_mm,
        roi_size_mm=s.params.roi_size_mm,
        window_hu=s.params.window_hu,
        tumor_values=s.params.tumor_values,
        organ_values=s.params.organ_values,
    ),
)
