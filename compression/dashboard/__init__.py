"""The Gradio dashboard: ``create_app(store_dir)`` builds the Blocks app; ``launch_kwargs()`` says how to serve it.

The dashboard never trains or measures by itself: it reads the run store (or a published run) and asks the backend.
Gradio is imported only when the app is built (``create_app``): ``make_context`` (app.py starts the starter run
before the web stack loads), the pure views and the presentation layer the CLI uses never load it.
"""
from compression.dashboard.context import make_context


def __getattr__(name: str):
    if name in ("create_app", "launch_kwargs", "theme"):
        from compression.dashboard import app

        return getattr(app, name)
    if name == "make_context":  # no Gradio: app.py starts the starter run before the web stack loads

        return make_context
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["create_app", "launch_kwargs", "theme", "make_context"]
