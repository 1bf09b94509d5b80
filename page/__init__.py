"""The Streamlit page's parts (app.py draws them): cards, the conversation and the viewer of originals."""
