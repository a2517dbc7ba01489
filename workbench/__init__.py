"""App-side support for the Streamlit pages: cached models and results, inputs and share links,
widgets generated from method specs, progress with a stop control, displays and exports.

The library (saliency_core) knows nothing of Streamlit; everything that does lives here, so the
page scripts in pages/ stay thin: widgets -> saliency_core calls -> display.
"""
