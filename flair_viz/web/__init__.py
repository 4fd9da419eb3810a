"""Web helpers for the Streamlit pages, without Streamlit: tile URLs, Leaflet maps and legends, Explore layers, the story."""
