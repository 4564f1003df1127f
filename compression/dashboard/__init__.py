"""The Gradio dashboard: ``create_app(store_dir)`` builds the Blocks app; ``launch_kwargs()`` says how to serve it.

The dashboard never trains or measures by itself: it reads the run store and asks the backend.
"""

from .app import create_app, launch_kwargs, theme

__all__ = ["create_app", "launch_kwargs", "theme"]
