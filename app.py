"""Entry point: `python app.py` serves the BERT Compression Lab dashboard (also the Hugging Face Space app file)."""

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the page works fully offline
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the BERT Compression Lab dashboard.")
    parser.add_argument("--store", metavar="DIR", help="run store folder (default: $COMPRESSION_LAB_STORE or ./runs)")
    args = parser.parse_args()

    from compression.dashboard import create_app, launch_kwargs

    create_app(args.store).launch(**launch_kwargs())


if __name__ == "__main__":
    main()
