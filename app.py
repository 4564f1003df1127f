"""Entry point: `python app.py` serves the BERT Compression Lab dashboard (also the Hugging Face Space app file)."""

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the page works fully offline
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Serve the BERT Compression Lab dashboard. Host and port: GRADIO_SERVER_NAME / "
                    "GRADIO_SERVER_PORT (default 127.0.0.1:7860).")
    parser.add_argument("--store", metavar="DIR", help="run store folder, the only place the app writes "
                                                       "(default: $COMPRESSION_LAB_STORE or ./runs)")
    args = parser.parse_args()

    from compression.store import resolve_store_dir

    store = resolve_store_dir(args.store)
    store.mkdir(parents=True, exist_ok=True)
    # Everything the app writes stays in the store: uploads/downloads, re-joined models, datasets and metric caches.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(store / "gradio-tmp"))
    os.environ.setdefault("COMPRESSION_LAB_CACHE", str(store / "cache"))
    os.environ.setdefault("HF_HOME", str(store / "hf-home"))

    from compression.dashboard import create_app, launch_kwargs

    create_app(str(store)).launch(**launch_kwargs())


if __name__ == "__main__":
    main()
