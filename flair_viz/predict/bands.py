"""A card's bands in a file and its normalisation: shared by inference, live tiles and ONNX calibration."""

from __future__ import annotations

import numpy as np

from flair_viz.core import raster, stack
from flair_viz.core.errors import InvalidRaster
from flair_viz.predict.cards import ModelCard


def model_input(card: ModelCard, info: raster.RasterInfo, bands: tuple[str, ...] | None, source: str) -> list[int]:
    """The one check of an image against a model card, before any work: 8-bit bands
    (:func:`flair_viz.core.raster.check_image_dtype`) that include the card's; returns their indexes.

    The CLI and the batch jobs call it on the header; live tiles make the same dtype check.
    """
    raster.check_image_dtype(info, source)
    return band_indexes(card, tuple(bands) if bands else raster.band_names_for(info.count), source)


def band_indexes(card: ModelCard, file_bands: tuple[str, ...], source: str) -> list[int]:
    """1-based indexes of the card's bands in a file, or an InvalidRaster naming card, file and fix."""
    missing = [b for b in card.in_bands if b not in file_bands]
    if missing:
        raise InvalidRaster(
            f"{source} has {len(file_bands)} band(s) ({', '.join(file_bands)}) but model {card.id} "
            f"({card.card_path.name}) needs {len(card.in_bands)}: {', '.join(card.in_bands)} "
            f"(missing {', '.join(missing)})",
            "give an image with those bands (FLAIR patches have R, G, B, NIR, elevation), declare the file's "
            "bands correctly, or choose a model whose in_bands the image has" + stack.layers_fix(missing),
        )
    return [file_bands.index(b) + 1 for b in card.in_bands]


def normalise(card: ModelCard, image: np.ndarray) -> np.ndarray:
    """(x − mean) / std per band, exactly as the card says the model was trained."""
    mean = np.asarray(card.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(card.std, dtype=np.float32)[:, None, None]
    return (image.astype(np.float32) - mean) / std
