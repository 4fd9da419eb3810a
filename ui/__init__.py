"""Streamlit helpers shared by the pages. Only the UI imports this package."""
