"""Seeded synthetic abdominal CT phantoms in KiTS layout.

Each case is a small contrast-enhanced abdomen in Hounsfield units: air, a body
with a subcutaneous fat layer, soft tissue with smooth texture, liver, spleen,
aorta, a vertebral body with cortical bone, two kidneys (enhancing cortex,
darker medulla, perirenal fat) and one renal tumor of random size, shape,
position (partly exophytic) and enhancement, from hypodense to nearly
iso-dense with the kidney. Partial-volume blur and scanner noise follow, on an
anisotropic voxel grid that varies from case to case.

Labels follow KiTS: 0 background, 1 kidney, 2 tumor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from boxseg.io import write_image

FIELD_OF_VIEW_MM = (140.0, 190.0, 210.0)  # z, y, x


@dataclass(frozen=True)
class PhantomCase:
    image_hu: np.ndarray  # int16 (z, y, x)
    label: np.ndarray  # uint8 (z, y, x)
    spacing_mm: tuple  # (z, y, x)
    tumor_radius_mm: float
    tumor_hu: float


def _smooth_field(shape: tuple[int, ...], sigma_vox: list[float], rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance smooth random field."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return (field - field.mean()) / (field.std() + 1e-6)


def _ellipsoid(coords, centre, semi_axes):
    return sum(((c - m) / a) ** 2 for c, m, a in zip(coords, centre, semi_axes))


@dataclass(frozen=True)
class _Grid:
    """A case's voxel grid: spacing (z, y, x) in mm, shape, and the (z, y, x) mm coordinates
    of the voxel centres (``coords`` broadcast to ``shape``; ``yy`` and ``xx`` unbroadcast)."""

    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    coords: list[np.ndarray]
    yy: np.ndarray
    xx: np.ndarray

    def sigma(self, mm: float) -> list[float]:
        """A Gaussian sigma of ``mm`` millimetres in voxels, per axis."""
        return [mm / s for s in self.spacing]


def _voxel_grid(rng: np.random.Generator) -> _Grid:
    """Draw the anisotropic voxel spacing and lay out the field of view on it."""
    spacing = (float(rng.uniform(2.0, 3.0)), *(2 * [float(rng.uniform(1.4, 1.8))]))
    shape = tuple(round(f / s) for f, s in zip(FIELD_OF_VIEW_MM, spacing))
    zz, yy, xx = (
        (np.arange(n, dtype=np.float32)[tuple(slice(None) if i == a else None for i in range(3))] - (n - 1) / 2) * s
        for a, (n, s) in enumerate(zip(shape, spacing))
    )
    return _Grid(spacing, shape, np.broadcast_arrays(zz, yy, xx), yy, xx)


def _body(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Air, the body with its subcutaneous fat layer, textured soft tissue and fat patches:
    the HU volume, the body mask and the mask inside the fat layer."""
    shape, yy, xx = grid.shape, grid.yy, grid.xx
    hu = np.full(shape, -1000.0, dtype=np.float32)
    body_ax, body_ay = rng.uniform(88, 100), rng.uniform(66, 78)
    body = (yy / body_ay) ** 2 + (xx / body_ax) ** 2 <= 1.0
    body = np.broadcast_to(body, shape)
    inner = np.broadcast_to((yy / (body_ay - 11)) ** 2 + (xx / (body_ax - 13)) ** 2 <= 1.0, shape)
    hu[body] = -100.0
    tissue = 45.0 + 12.0 * _smooth_field(shape, grid.sigma(8.0), rng)
    hu[inner] = tissue[inner]
    # Retroperitoneal and visceral fat patches.
    fat_patches = (_smooth_field(shape, grid.sigma(12.0), rng) > 0.8) & inner
    hu[fat_patches] = -90.0
    return hu, body, inner


def _paint(hu: np.ndarray, inner: np.ndarray, mask: np.ndarray, value: np.ndarray | float) -> None:
    """Set ``hu`` to ``value`` (a volume or a constant) where ``mask`` lies inside the body wall."""
    hu[mask & inner] = value[mask & inner] if isinstance(value, np.ndarray) else value


def _paint_organs(hu: np.ndarray, inner: np.ndarray, grid: _Grid, rng: np.random.Generator) -> None:
    """Liver, spleen, aorta and the vertebral body (cortical and cancellous bone)."""
    shape, coords, yy, xx = grid.shape, grid.coords, grid.yy, grid.xx
    liver = _ellipsoid(coords, (0, -5, -45), (70, 50, 42)) <= 1
    _paint(hu, inner, liver, 60.0 + 8.0 * _smooth_field(shape, grid.sigma(8.0), rng))
    spleen = _ellipsoid(coords, (10, 20, 62), (35, 22, 16)) <= 1
    _paint(hu, inner, spleen, 110.0 + 8.0 * _smooth_field(shape, grid.sigma(8.0), rng))
    aorta = np.broadcast_to((yy - 18) ** 2 + (xx + 12) ** 2 <= 10.0**2, shape)
    _paint(hu, inner, aorta, 210.0)
    vertebra = np.broadcast_to((yy - 40) ** 2 + xx**2 <= 15.0**2, shape)
    cancellous = np.broadcast_to((yy - 40) ** 2 + xx**2 <= 11.0**2, shape)
    _paint(hu, inner, vertebra, 650.0)
    _paint(hu, inner, cancellous, 230.0)


def _paint_kidneys(
    hu: np.ndarray, inner: np.ndarray, grid: _Grid, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[tuple[float, float, float], tuple[float, float, float]]]]:
    """Both kidneys (perirenal fat, enhancing cortex, darker medulla): the label map with
    the kidneys as 1, and each kidney's (centre, semi-axes) in mm, right (x < 0) first."""
    label = np.zeros(grid.shape, dtype=np.uint8)
    kidneys = []
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        centre = (rng.uniform(-12, 12), rng.uniform(22, 30), sign * rng.uniform(44, 54))
        axes = (rng.uniform(40, 50), rng.uniform(19, 24), rng.uniform(22, 27))
        kidneys.append((centre, axes))
        r2 = _ellipsoid(grid.coords, centre, axes)
        _paint(hu, inner, r2 <= 1.35**2, -95.0)  # perirenal fat
        kidney = r2 <= 1.0
        medulla = r2 <= 0.62**2
        _paint(hu, inner, kidney, 175.0 + 10.0 * _smooth_field(grid.shape, grid.sigma(4.0), rng))
        _paint(hu, inner, medulla, 105.0 + 8.0 * _smooth_field(grid.shape, grid.sigma(4.0), rng))
        label[kidney & inner] = 1
    return label, kidneys


def _paint_tumor(
    hu: np.ndarray,
    label: np.ndarray,
    body: np.ndarray,
    grid: _Grid,
    kidney: tuple[tuple[float, float, float], tuple[float, float, float]],
    tumor_side: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """A renal tumor on the lateral surface of ``kidney`` (centre, semi-axes), partly
    exophytic, sometimes with a necrotic core, painted into ``hu`` and as 2 into ``label``;
    returns its radius (mm) and mean enhancement (HU)."""
    centre, axes = kidney
    direction = rng.standard_normal(3)
    direction[2] = abs(direction[2]) * (1 if tumor_side else -1)  # lateral side, away from the spine
    direction /= np.linalg.norm(direction)
    surface_point = np.array(centre) + direction / np.sqrt(np.sum((direction / np.array(axes)) ** 2))
    tumor_radius = float(rng.uniform(8.0, 22.0))
    depth = rng.uniform(0.0, 0.6) * tumor_radius  # 0: half outside the kidney
    tumor_centre = surface_point - direction * depth
    tumor_axes = tumor_radius * rng.uniform(0.8, 1.2, size=3)
    lumps = 0.18 * _smooth_field(grid.shape, grid.sigma(5.0), rng)
    tumor = (_ellipsoid(grid.coords, tumor_centre, tumor_axes) <= (1.0 + lumps) ** 2) & body
    tumor_hu = float(rng.choice([rng.uniform(25, 60), rng.uniform(60, 100), rng.uniform(100, 140)]))
    tumor_values = tumor_hu + 14.0 * _smooth_field(grid.shape, grid.sigma(3.0), rng)
    if tumor_radius > 15 and rng.random() < 0.6:
        necrosis = _ellipsoid(grid.coords, tumor_centre, 0.45 * tumor_axes) <= (1.0 + lumps) ** 2
        tumor_values = np.where(necrosis, 15.0 + 6.0 * _smooth_field(grid.shape, grid.sigma(8.0), rng), tumor_values)
    hu[tumor] = tumor_values[tumor]
    label[tumor] = 2
    return tumor_radius, tumor_hu


def _scan(hu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Partial-volume blur and scanner noise, rounded to int16 HU."""
    hu = ndi.gaussian_filter(hu, [0.7, 0.5, 0.5])  # partial volume
    hu += rng.normal(0.0, 14.0, size=hu.shape).astype(np.float32)
    return np.clip(np.round(hu), -1024, 3071).astype(np.int16)


def make_phantom(seed: int) -> PhantomCase:
    """Generate one phantom case from ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    grid = _voxel_grid(rng)
    hu, body, inner = _body(grid, rng)
    _paint_organs(hu, inner, grid, rng)
    tumor_side = int(rng.integers(2))
    label, kidneys = _paint_kidneys(hu, inner, grid, rng)
    tumor_radius, tumor_hu = _paint_tumor(hu, label, body, grid, kidneys[tumor_side], tumor_side, rng)
    image_hu = _scan(hu, rng)
    return PhantomCase(image_hu, label, grid.spacing, tumor_radius, tumor_hu)


def write_phantom_case(seed: int, image_path: str | os.PathLike, label_path: str | os.PathLike) -> PhantomCase:
    """Generate a case and write it in KiTS layout (int16 HU, uint8 labels)."""
    case = make_phantom(seed)
    origin = [-(n - 1) / 2 * s for n, s in zip(case.image_hu.shape[::-1], case.spacing_mm[::-1])]
    for array, path in ((case.image_hu, image_path), (case.label, label_path)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(case.spacing_mm[::-1])
        image.SetOrigin(origin)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_image(image, path)
    return case
