"""The network: a MONAI UNet or DynUNet (3D, or 2D on axial slices), its file, and inference.

``save_model`` writes the weights with what rebuilds the network (its name, features,
patch size, spatial dimensions), so ``load_model`` (``weights_only=True``) needs no config.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from boxseg.atomic import atomic_write

if TYPE_CHECKING:
    from boxseg.train_settings import TrainSettings


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` through ``atomic_write``: the file appears only when it is complete.
    Saved to memory first, so the archive's inner name is torch's fixed one rather than the
    temporary file's: the same weights give the same bytes, run after run."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def build_unet(features: Sequence[int], spatial_dims: int = 3) -> torch.nn.Module:
    """A 3D (or 2D) UNet (MONAI) with one input channel and two output classes."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=2,
        channels=tuple(features),
        strides=(2,) * (len(features) - 1),
        num_res_units=1,
        norm="instance",
    )


def build_dynunet(features: Sequence[int], spatial_dims: int = 3) -> torch.nn.Module:
    """A 3D (or 2D) DynUNet (MONAI; nnU-Net's layout): per stage two 3x3(x3) convolutions
    with instance norm and leaky ReLU, stride-2 downsampling after the first stage,
    transposed-convolution upsampling; one input channel, two output classes."""
    from monai.networks.nets import DynUNet

    levels = len(features)
    return DynUNet(
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=2,
        kernel_size=[3] * levels,
        strides=[1] + [2] * (levels - 1),
        upsample_kernel_size=[2] * (levels - 1),
        filters=list(features),
        norm_name="instance",
        res_block=False,
    )


NETWORK_BUILDERS = {"unet": build_unet, "dynunet": build_dynunet}


def build_network(name: str, features: Sequence[int], spatial_dims: int = 3) -> torch.nn.Module:
    """The network called ``name`` (``train_settings.NETWORKS``)."""
    if name not in NETWORK_BUILDERS:
        raise ValueError(f"unknown network {name!r}: one of {sorted(NETWORK_BUILDERS)}")
    return NETWORK_BUILDERS[name](features, spatial_dims)


def save_model(model: torch.nn.Module, settings: TrainSettings, path: str | os.PathLike, preprocessing: dict | None = None,
               calibration: dict | None = None) -> None:
    """The weights (on CPU), what rebuilds the network, the preprocessing its training
    images had (``preprocessing``: ``spacing_mm``, ``window_hu``, ``placement``, ``roi_size_mm``) and its decision threshold
    chosen on held-out training cases (``calibration``, ``calibration.calibrate``), written
    atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    record = {"state_dict": state, "network": settings.network, "features": list(settings.features),
              "patch_size": list(settings.patch_size), "spatial_dims": settings.spatial_dims}
    if preprocessing:
        record["preprocessing"] = preprocessing
    if calibration:
        record["calibration"] = calibration
    atomic_torch_save(record, Path(path))


def read_model(path: str | os.PathLike) -> dict:
    """The record ``save_model`` wrote (``weights_only=True``): weights, network and sizes, and
    the preprocessing and calibration records when saved with them. Read it once and hand it
    to ``load_model``, ``model_preprocessing`` and ``model_calibration``.

    Raises:
        ValueError: the file is not such a record (naming the file and why).
    """
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such model file")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
        missing = [key for key in ("state_dict", "features", "patch_size") if not isinstance(record, dict) or key not in record]
        if missing:
            raise KeyError(", ".join(missing))
    except Exception as err:  # noqa: BLE001 (whatever torch makes of a foreign file)
        raise ValueError(f"{path}: {_not_a_model(err)}") from None
    return record


def _not_a_model(err: Exception) -> str:
    why = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
    return f"not a model written by boxseg ({type(err).__name__}: {why})"


def _record(model: str | os.PathLike | dict) -> dict:
    return model if isinstance(model, dict) else read_model(model)


def model_preprocessing(model: str | os.PathLike | dict) -> dict:
    """The preprocessing a model's training images had (``save_model``); {} for a model saved
    without it. ``model``: its file or its record (``read_model``)."""
    return dict(_record(model).get("preprocessing") or {})


def model_calibration(model: str | os.PathLike | dict) -> dict:
    """A model's calibration record (``save_model``); {} for a model trained without held-out
    cases. ``model``: its file or its record (``read_model``)."""
    return dict(_record(model).get("calibration") or {})


def preprocessing_mismatch(trained: dict, geometry: dict) -> str:
    """How a case's ROI (its geometry record, ``layout.ROI_GEOMETRY``) differs from the
    preprocessing a model was trained on, in words; '' when it does not (or is not recorded)."""
    problems = []
    if "spacing_mm" in trained:
        spacing = [float(s) for s in geometry["roi"]["spacing"][::-1]]
        if not np.allclose(spacing, trained["spacing_mm"], rtol=1e-3):
            problems.append(f"spacing_mm {trained['spacing_mm']} at training, {spacing} here")
    if "window_hu" in trained and not np.allclose(geometry["window_hu"], trained["window_hu"]):
        problems.append(f"window_hu {trained['window_hu']} at training, {list(geometry['window_hu'])} here")
    return "; ".join(problems)


def roi_difference(trained: dict, geometry: dict) -> str:
    """How a case's ROI was placed or sized otherwise than the model's training ROIs
    (``placement``: one, or the list of those its training cases had; ``roi_size_mm``), in
    words; '' when it was not (or is not recorded).
    The network slides over any ROI, so this is worth a warning, not a refusal: a model
    trained on the paper's organ ROIs predicts on a user's box-placed ones."""
    problems = []
    placed = trained.get("placement")
    placed = [placed] if isinstance(placed, str) else placed  # one placement, or every one the training cases had
    if placed and "placement" in geometry and geometry["placement"] not in placed:
        problems.append(f"ROIs placed on the {' and '.join(placed)} at training, on the {geometry['placement']} here")
    if "roi_size_mm" in trained and "roi_size_mm" in geometry and not np.allclose(trained["roi_size_mm"], geometry["roi_size_mm"]):
        problems.append(f"roi_size_mm {trained['roi_size_mm']} at training, {geometry['roi_size_mm']} here")
    return "; ".join(problems)


def load_model(model: str | os.PathLike | dict, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The network of a model written by ``save_model`` (its file, read with weights_only=True,
    or its record, ``read_model``). Returns (model, patch_size).

    Raises:
        ValueError: it is not such a model (naming the file, or "model record" for a record, and why).
    """
    record = _record(model)
    try:
        network = build_network(str(record.get("network", "unet")), record["features"], int(record.get("spatial_dims", 3)))
        network.load_state_dict(record["state_dict"])
        patch_size = tuple(record["patch_size"])
    except Exception as err:  # noqa: BLE001 (a record that is not one of ours)
        raise ValueError(f"{model if not isinstance(model, dict) else 'model record'}: {_not_a_model(err)}") from None
    return network.to(device).eval(), patch_size


def predict_probability(model: torch.nn.Module, image: np.ndarray, patch_size: Sequence[int], device: torch.device | str = "cpu",
                        overlap: float = 0.5, flip_tta: bool = False) -> np.ndarray:
    """Lesion probability (z, y, x) by Gaussian-weighted sliding-window inference (MONAI).

    With ``flip_tta`` the probabilities of the image and of its flips along each
    axis (the training augmentation) are averaged.
    """
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.asarray(image, np.float32)[None, None]).to(device)
    two_d = len(patch_size) == 3 and patch_size[0] == 1 and _is_2d(model)
    if two_d:  # axial slices as a batch of 2D images
        x, patch_size = x[0].permute(1, 0, 2, 3), tuple(patch_size[1:])
    flips = [()] + ([(d,) for d in range(2, x.dim())] if flip_tta else [])
    prob = 0.0
    with torch.no_grad():
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            logits = sliding_window_inference(xi, tuple(patch_size), 4, model, overlap=overlap, mode="gaussian")
            p = torch.softmax(logits, dim=1)
            prob = prob + (torch.flip(p, dims) if dims else p)
    prob = prob / len(flips)
    lesion = prob[:, 1] if two_d else prob[0, 1]
    return lesion.cpu().numpy().astype(np.float32)


def _is_2d(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
