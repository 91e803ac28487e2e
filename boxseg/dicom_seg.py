"""The final mask as a DICOM Segmentation (highdicom) for a case read from a DICOM series,
so it opens over the series in a PACS or viewer; checked by reading it back."""

from __future__ import annotations

import logging
import os

import numpy as np

from boxseg.io import CaseError, dicom_series_files

log = logging.getLogger("boxseg")


def write_dicom_seg(case: str, mask: np.ndarray, series_dir: str | os.PathLike, out_path: str | os.PathLike,
                    *, label: str = "lesion") -> None:
    """``mask`` (z, y, x, on the series' own grid as ``io.read_image`` reads it) as a binary
    DICOM SEG referencing the series' images, written atomically and read back to check
    that every frame holds the mask."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from boxseg import __version__
    from boxseg.atomic import atomic_write

    chosen, files, _ = dicom_series_files(series_dir, case)
    sources = [pydicom.dcmread(f) for f in files[chosen]]
    if mask.shape[0] != len(sources):
        raise CaseError(case, series_dir, f"mask has {mask.shape[0]} slices, the series {len(sources)}")
    missing = [k for k in ("FrameOfReferenceUID", "StudyInstanceUID", "SOPInstanceUID") if k not in sources[0]]
    if missing:
        raise CaseError(case, series_dir, f"the series lacks {missing}, which a DICOM SEG referencing it needs")
    algorithm = hd.AlgorithmIdentificationSequence(name="boxseg", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=np.asarray(mask, np.uint8), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=hd.UID(), series_number=9001, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="boxseg", manufacturer_model_name="boxseg", software_versions=__version__,
        device_serial_number="0", series_description=f"boxseg {label}")
    atomic_write(out_path, lambda tmp: seg.save_as(tmp))
    back = hd.seg.segread(out_path).get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], combine_segments=True)
    if not np.array_equal(np.asarray(back) > 0, np.asarray(mask) > 0):
        os.unlink(out_path)
        raise CaseError(case, out_path, "the DICOM SEG written does not read back as the mask")
    log.info("case %s: DICOM SEG of %d lesion voxels over %d slices of series %s", case, int((mask > 0).sum()), len(sources), chosen)
