"""Entry point: `python app.py` serves the BERT Compression Lab dashboard (also the Hugging Face Space app file)."""

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the page works fully offline
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Serve the BERT Compression Lab dashboard. Host and port: GRADIO_SERVER_NAME / "
                    "GRADIO_SERVER_PORT (default 127.0.0.1:7860). Builds from the browser: COMPRESSION_LAB_BUILDS="
                    "on|off (default off when serving a published run or on a Space, else on).")
    parser.add_argument("--store", metavar="DIR", help="run store folder, the only place the app writes "
                                                       "(default: $COMPRESSION_LAB_STORE or ./runs)")
    parser.add_argument("--published", metavar="REF", default=os.environ.get("COMPRESSION_LAB_PUBLISHED") or None,
                        help="serve a published run read-only: a folder, a .zip or hub:USER/NAME (default: "
                             "$COMPRESSION_LAB_PUBLISHED); nothing is written inside it")
    parser.add_argument("--no-starter", action="store_true",
                        help="do not build recipes/starter.yaml in the background when the store is empty")
    args = parser.parse_args()

    from compression.store.run_store import resolve_store_dir

    store = resolve_store_dir(args.store)
    store.mkdir(parents=True, exist_ok=True)
    # Everything the app writes stays in the store: uploads/downloads, re-joined models, datasets and metric caches.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(store / "gradio-tmp"))
    os.environ.setdefault("COMPRESSION_LAB_CACHE", str(store / "cache"))
    os.environ.setdefault("HF_HOME", str(store / "hf-home"))

    from compression.builder.child import STARTER_RECIPE
    from compression.core.errors import LabError
    from compression.dashboard import make_context

    try:  # before the web stack loads: an empty store's starter run begins building at once
        ctx = make_context(str(store), published=args.published, starter=None if args.no_starter else STARTER_RECIPE)
    except LabError as err:  # a published run that cannot be opened: one line, not a traceback
        sys.exit(f"error: {err}")
    from compression.dashboard import create_app, launch_kwargs

    create_app(ctx=ctx).launch(**launch_kwargs())


if __name__ == "__main__":
    main()
