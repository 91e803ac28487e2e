from boxseg.steps.preprocess import preprocess_case
from boxseg.workflow import run_step

run_step(
    snakemake,
    lambda s: preprocess_case(
        s.wildcards.case,
        s.params.files["image"],
        s.params.files.get("label"),
        s.output.boxes,
        s.output.image,
        s.output.label,
        s.output.geometry,
        box_rows=s.params.box_rows,
        box_table=s.config["boxes"].get("table"),  # for errors only: not a param, so a new path reruns nothing
        box_file=s.params.files.get("box_file"),
        needs_boxes=s.params.needs_boxes,
        margin_mm=s.params.margin_mm,
        protocol=s.params.protocol,
        box_seed=s.params.box_seed,
        slack_mm=s.params.slack_mm,
        roi_from=s.params.roi_from,
        spacing_mm=s.params.spacing_mm,
        roi_size_mm=s.params.roi_size_mm,
        window_hu=s.params.window_hu,
        tumor_values=s.params.tumor_values,
        organ_values=s.params.organ_values,
    ),
)
