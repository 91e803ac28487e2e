"""Image input/output with full geometry, atomic writes and clear errors."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from boxseg.atomic import atomic_write, write_text

CASE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_CASE_ID_RE = re.compile(rf"^{CASE_ID_PATTERN}$")


class CaseError(RuntimeError):
    """Bad input for one case: the message names the case, the file and the problem."""

    def __init__(self, case: str, path: str | os.PathLike | None, problem: str):
        self.case, self.path, self.problem = case, str(path) if path else "-", problem
        super().__init__(f"case {case}: {self.path}: {problem}")


def validate_case_id(case: str) -> str:
    """Return ``case`` if it is safe as a file name, else raise ValueError.

    Allowed: letters, digits, ``_``, ``-`` and ``.``, starting with a letter or
    digit, and never ``..`` (so no path separators and no parent references).
    """
    if not isinstance(case, str) or not _CASE_ID_RE.match(case) or ".." in case:
        raise ValueError(f"invalid case id {case!r}: use letters, digits, '_', '-', '.' (no '/' or '..')")
    return case


def read_table(path: str | os.PathLike, what: str, **kwargs):
    """A user's TSV (``.tsv``, ``.txt``) or CSV table; an empty or unparsable file is a
    ValueError naming ``what`` (e.g. "case sheet") and the file."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    tsv = path.suffix in (".tsv", ".txt")
    try:
        return pd.read_csv(path, sep="\t" if tsv else ",", **kwargs)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path} is not a {'TSV' if tsv else 'CSV'} table: "
                         f"{(str(e).splitlines() or [type(e).__name__])[0]}") from None


def read_image(path: str | os.PathLike, case: str = "?") -> sitk.Image:
    """Read a 3D image (NIfTI, NRRD, MHA/MHD or a DICOM series directory).

    For a DICOM directory holding several series, the series with the most
    slices is read; its id is in ``image.GetMetaData('boxseg_series')``.

    Raises:
        CaseError: missing or unreadable file, not 3D, or non-finite voxels.
    """
    path = Path(path)
    if not path.exists():
        raise CaseError(case, path, "file not found")
    try:
        if path.is_dir():
            image = _read_dicom_series(path, case)
        else:
            if path.name.endswith(".gz"):
                _check_gzip_complete(path, case)
            image = sitk.ReadImage(str(path))
    except CaseError:
        raise
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise CaseError(case, path, f"cannot read image ({first[:160]})") from None
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise CaseError(case, path, f"expected a 3D image, got size {image.GetSize()}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(case, path, "expected a scalar image, got a vector image")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise CaseError(case, path, f"{int((~np.isfinite(array)).sum())} non-finite (NaN/inf) voxels")
    return image


def _check_gzip_complete(path: Path, case: str) -> None:
    """ITK reads a truncated .gz silently (missing voxels become zeros); gzip does not."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except (EOFError, OSError, zlib.error) as err:
        raise CaseError(case, path, f"cannot read image (truncated or corrupt gzip: {err})") from None


def _read_dicom_series(directory: Path, case: str) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series_ids = reader.GetGDCMSeriesIDs(str(directory))
    if not series_ids:
        raise CaseError(case, directory, "directory holds no DICOM series")
    files = {sid: reader.GetGDCMSeriesFileNames(str(directory), sid) for sid in series_ids}
    chosen = max(series_ids, key=lambda sid: len(files[sid]))
    reader.SetFileNames(files[chosen])
    image = reader.Execute()
    image.SetMetaData("boxseg_series", chosen)
    logging.getLogger("boxseg").info(
        "case %s: %s: DICOM series %s (%d files; %d series in the directory, the one with most files is read)",
        case, directory, chosen, len(files[chosen]), len(series_ids))
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    """True when two images share size, spacing, origin and direction."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol * 10)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def read_label(path: str | os.PathLike, reference: sitk.Image, case: str = "?") -> sitk.Image:
    """Read a label map and check that it lies on ``reference``'s grid."""
    label = read_image(path, case)
    if not same_grid(label, reference):
        raise CaseError(
            case,
            path,
            f"label grid (size {label.GetSize()}, spacing {np.round(label.GetSpacing(), 4).tolist()}) "
            f"differs from the image grid (size {reference.GetSize()}, "
            f"spacing {np.round(reference.GetSpacing(), 4).tolist()})",
        )
    return label


def read_lesion(path: str | os.PathLike, reference: sitk.Image, tumor_values, case: str = "?") -> np.ndarray:
    """(z, y, x) bool mask of the lesion label values in a label map on ``reference``'s grid."""
    return np.isin(sitk.GetArrayFromImage(read_label(path, reference, case)), tumor_values)


def array_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a (z, y, x) array as an image with ``reference``'s geometry."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def write_image(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write an image atomically (temporary file, then rename), compressed."""
    atomic_write(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=True))


def write_json(obj, path: str | os.PathLike) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def geometry_of(image: sitk.Image) -> dict:
    """The grid of an image as a JSON-able record (SimpleITK x, y, z order)."""
    return {
        "size": list(image.GetSize()),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
    }


def reference_from_geometry(geometry: dict, pixel=sitk.sitkUInt8) -> sitk.Image:
    """An empty image on the grid recorded by ``geometry_of``."""
    image = sitk.Image([int(v) for v in geometry["size"]], pixel)
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(geometry["direction"])
    return image
