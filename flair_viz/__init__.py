"""FLAIR Viz: explore land-cover predictions on IGN FLAIR aerial imagery.

The library never imports Streamlit; the UI (``app.py``, ``pages/``) only calls it.
"""

__version__ = "0.1.0"
