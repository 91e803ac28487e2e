"""Image input/output with full geometry, atomic writes and clear errors."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from boxseg.atomic import atomic_write, write_text

if TYPE_CHECKING:
    import pandas as pd

CASE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_CASE_ID_RE = re.compile(rf"^{CASE_ID_PATTERN}$")


class CaseError(RuntimeError):
    """Bad input for one case: the message names the case, the file and the problem."""

    def __init__(self, case: str, path: str | os.PathLike | None, problem: str) -> None:
        self.case, self.path, self.problem = case, str(path) if path else "-", problem
        super().__init__(f"case {case}: {self.path}: {problem}")


MAX_CASE_ID = 100  # characters: file names of 255 bytes hold a case id with room for suffixes


def validate_case_id(case: str) -> str:
    """Return ``case`` if it is safe as a file name, else raise ValueError.

    Allowed: letters, digits, ``_``, ``-`` and ``.``, starting with a letter or
    digit, never ``..`` (so no path separators and no parent references), and at most
    ``MAX_CASE_ID`` characters.
    """
    if not isinstance(case, str) or not _CASE_ID_RE.match(case) or ".." in case:
        raise ValueError(f"invalid case id {case!r}: use letters, digits, '_', '-', '.' (no '/' or '..')")
    if len(case) > MAX_CASE_ID:
        raise ValueError(f"invalid case id {case[:20]}...: {len(case)} characters, at most {MAX_CASE_ID}")
    return case


def check_model_file(path: str | os.PathLike) -> None:
    """A model file given by a user (``model=``) exists and is what ``training.save_model``
    writes (a torch zip archive), checked without loading torch; ValueError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model {path}: no such file")
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise ValueError(f"model {path}: not a model file written by boxseg (a torch archive, results/models/METHOD/model.pt)")


def read_table(path: str | os.PathLike, what: str, **kwargs: Any) -> pd.DataFrame:
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
            _check_not_truncated(path, case)
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


def _data_bytes(path: Path) -> int:
    """Bytes of voxel data the image's header promises."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    per_voxel = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1] * reader.GetDimension(), reader.GetPixelID())).dtype).itemsize
    return int(np.prod(reader.GetSize())) * per_voxel


def _check_not_truncated(path: Path, case: str) -> None:
    """ITK reads an uncompressed file cut short with the missing voxels as 0 (NIfTI) or
    fails with a misleading message (MetaImage): compare the file's size with what its
    header promises (NIfTI: a header of at least 352 bytes, then the voxels; MetaImage and
    NRRD with the data in the file: the text header, then the voxels, or the compressed
    size MetaImage states)."""
    name = path.name.lower()
    if not name.endswith((".nii", ".mha", ".nrrd")):
        return
    size = path.stat().st_size
    try:
        expected = _data_bytes(path)
    except RuntimeError:
        return  # an unreadable header: ITK's own error follows
    if name.endswith(".nii"):
        expected += 352
    else:
        with path.open("rb") as f:
            head = f.read(1 << 16)
        end = head.find(b"\n\n") + 2 if name.endswith(".nrrd") else head.find(b"ElementDataFile")
        if end <= 1 or (name.endswith(".mha") and b"LOCAL" not in head[end:end + 40]):
            return  # data in another file
        if name.endswith(".mha"):
            end = head.index(b"\n", end) + 1
            fields = dict(line.split(b"=", 1) for line in head[:end].splitlines() if b"=" in line)
            fields = {k.strip(): v.strip() for k, v in fields.items()}
            if fields.get(b"CompressedData", b"False").lower() == b"true":
                expected = int(fields.get(b"CompressedDataSize", b"0") or 0)
        elif b"encoding: raw" not in head[:end] and b"encoding:raw" not in head[:end]:
            return  # compressed NRRD: ITK's zlib reports a cut stream
        expected += end
    if size < expected:
        raise CaseError(case, path, f"cannot read image (truncated: the file has {size} bytes, its header promises {expected})")


def dicom_series_files(directory: str | os.PathLike, case: str = "?") -> tuple[str, dict[str, Sequence[str]], Sequence[str]]:
    """The series a DICOM directory is read as (the one with the most files), every series'
    files in the order of the volume's slices, and the series ids."""
    reader = sitk.ImageSeriesReader()
    series_ids = reader.GetGDCMSeriesIDs(str(directory))
    if not series_ids:
        raise CaseError(case, directory, "directory holds no DICOM series")
    files = {sid: reader.GetGDCMSeriesFileNames(str(directory), sid) for sid in series_ids}
    return max(series_ids, key=lambda sid: len(files[sid])), files, series_ids


def _read_dicom_series(directory: Path, case: str) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    chosen, files, series_ids = dicom_series_files(directory, case)
    _check_slice_spacing(files[chosen], directory, case)
    reader.SetFileNames(files[chosen])
    image = reader.Execute()
    image.SetMetaData("boxseg_series", chosen)
    logging.getLogger("boxseg").info(
        "case %s: %s: DICOM series %s (%d files; %d series in the directory, the one with most files is read)",
        case, directory, chosen, len(files[chosen]), len(series_ids))
    return image


SLICE_GAP_TOLERANCE = 0.2  # of the typical slice step: scanners round positions to 0.01 mm; a lost slice doubles a step


def _check_slice_spacing(files: Sequence[str], directory: Path, case: str) -> None:
    """The series' slices evenly spaced along their normal (within ``SLICE_GAP_TOLERANCE``):
    a missing slice would otherwise be read with the spacing averaged over the gap, every
    slice after it misplaced."""
    if len(files) < 3:
        return
    positions, normal = [], None
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        reader.ReadImageInformation()
        if not reader.HasMetaDataKey("0020|0032") or not reader.HasMetaDataKey("0020|0037"):
            return  # no positions to check (ITK then uses the slice thickness)
        if normal is None:
            cosines = np.array([float(v) for v in reader.GetMetaData("0020|0037").split("\\")])
            normal = np.cross(cosines[:3], cosines[3:])
        positions.append(float(np.dot([float(v) for v in reader.GetMetaData("0020|0032").split("\\")], normal)))
    steps = np.diff(positions)  # the files in ITK's order (sorted along the normal)
    typical = float(np.median(np.abs(steps)))
    worst = int(np.argmax(np.abs(np.abs(steps) - typical)))
    if typical == 0 or abs(abs(steps[worst]) - typical) > max(SLICE_GAP_TOLERANCE * typical, 0.01):
        raise CaseError(case, directory, f"DICOM slices are not evenly spaced: {abs(steps[worst]):.3f} mm between slices "
                        f"{worst + 1} and {worst + 2} of {len(files)}, {typical:.3f} mm elsewhere (a missing or duplicate slice?)")


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
        raise CaseError(case, path, f"label grid differs from the image grid: {grid_difference(label, reference)}")
    return label


def grid_difference(a: sitk.Image, b: sitk.Image) -> str:
    """What differs between the grids of ``a`` (a label) and ``b`` (its image), in words."""
    parts = []
    for what, get, digits in (("size", sitk.Image.GetSize, 0), ("spacing", sitk.Image.GetSpacing, 4),
                              ("origin", sitk.Image.GetOrigin, 3), ("direction", sitk.Image.GetDirection, 4)):
        va, vb = np.round(get(a), digits).tolist(), np.round(get(b), digits).tolist()
        if va != vb:
            parts.append(f"{what} {va} against {vb}")
    return "; ".join(parts) or "within rounding"


def read_lesion(
    path: str | os.PathLike, reference: sitk.Image, tumor_values: Sequence[int], case: str = "?"
) -> np.ndarray:
    """(z, y, x) bool mask of the lesion label values in a label map on ``reference``'s grid."""
    return np.isin(sitk.GetArrayFromImage(read_label(path, reference, case)), tumor_values)


def array_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a (z, y, x) array as an image with ``reference``'s geometry."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def write_image(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write an image atomically (temporary file, then rename), compressed.

    ITK reports a short write (a full disk) on stderr without raising, so the file is read
    back before the rename: a whole gzip stream, and the image's grid and voxels."""

    def check(tmp: Path) -> None:
        try:
            if tmp.name.endswith(".gz"):
                _check_gzip_complete(tmp, "-")
            back = sitk.ReadImage(str(tmp))
        except (CaseError, RuntimeError) as err:
            why = err.problem if isinstance(err, CaseError) else (str(err).strip().splitlines() or ["unreadable"])[-1][:160]
            raise OSError(f"writing {path} failed, what was written does not read back (is the disk full?): {why}") from None
        if not same_grid(back, image) or not np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image)):
            raise OSError(f"writing {path} failed: what was written differs from the image (is the disk full?)")

    atomic_write(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=True), check)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def geometry_of(image: sitk.Image) -> dict:
    """The grid of an image as a JSON-able record (SimpleITK x, y, z order)."""
    return {
        "size": list(image.GetSize()),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
    }


def reference_from_geometry(geometry: dict, pixel: int = sitk.sitkUInt8) -> sitk.Image:
    """An empty image on the grid recorded by ``geometry_of``."""
    image = sitk.Image([int(v) for v in geometry["size"]], pixel)
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(geometry["direction"])
    return image


def read_array(path: str | os.PathLike, case: str = "?", dtype: type | np.dtype = np.float32) -> tuple[np.ndarray, sitk.Image]:
    """An image file as a (z, y, x) array of ``dtype``, with the image (its grid)."""
    image = read_image(path, case)
    return sitk.GetArrayFromImage(image).astype(dtype), image


def spacing_zyx(image: sitk.Image) -> tuple[float, float, float]:
    """The image's voxel spacing in mm, (z, y, x) as its arrays are indexed."""
    return tuple(float(s) for s in image.GetSpacing()[::-1])
