"""How a model sees an image, defined once for batch prediction, live tiles, calibration and fine-tuning.

IGN's FLAIR zone detection feeds a network 512 px windows and keeps only their centre: a 128 px margin on
each side is context, since pixels near a window's edge are predicted worse. Networks take input sizes that
the encoder's total stride divides, so every window or crop that is not 512 px is rounded to it.
"""

from __future__ import annotations

WINDOW = 512  # px side of the windows a model is fed (FLAIR patches are 512 px)
MARGIN = 128  # px of context on each side of a window, predicted but not kept
ALIGN = 32  # U-Net input sizes must be divisible by the encoder's total stride
