"""Corrections: paint the right class on the map, fine-tune the model on it, export it as FLAIR masks.

A facade over modules named by job: ``store`` (the corrections GeoPackage), ``labels`` (corrections
as training windows on each image's grid), ``training`` (the training loop, checkpoint and card),
``evaluate`` (parent vs fine-tuned, training pixels apart), ``export`` (FLAIR masks), ``jobs`` (the
fine-tune as a background process with a progress file), ``cli``. Modules import each other
directly, never this facade; torch is imported only inside the functions that train or predict.
"""

from flair_viz.correct.export import export_masks
from flair_viz.correct.store import LAYER, CorrectionStore, check_class, default_path, read_file
from flair_viz.correct.training import Result, Settings, finetune, user_models_dir

__all__ = ["LAYER", "CorrectionStore", "Result", "Settings", "check_class", "default_path", "export_masks",
           "finetune", "read_file", "user_models_dir"]
