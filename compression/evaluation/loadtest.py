"""Load test: N concurrent ``gradio_client`` clients drive a running app's Playground endpoint (``/predict``).

Each level (e.g. 1, 2, 4, 8, 16 clients) runs its own clients, each making ``predictions`` calls one after another
with real examples of what the app classifies: the app's own Playground examples (its ``/examples`` endpoint: pairs
of texts for a pair run, from the run's test data or the published run's packed examples), else the shipped
example sentences, else built-in texts or pairs. The report gives errors, p50/p95/max latency as a client sees it
(queueing included) and requests per second, so the growth of latency from 1 to N clients is visible. Bounded in
clients, calls and time: past the deadline no new call starts, and what did not run is reported as not run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from compression.core.errors import LabError
from compression.core.texts import Text, is_pairs, of_kind

MAX_CLIENTS = 64
MAX_PREDICTIONS = 1000
EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples.txt"
FALLBACK_TEXTS = ("A gripping, beautifully acted film.", "Dull, overlong and painfully predictable.",
                  "The plot is thin but the performances carry it.")
FALLBACK_PAIRS = (("He left at noon.", "He departed at 12."),
                  ("The company said its profits rose 5 percent.", "Profits at the company increased by five percent."),
                  ("A man is playing a guitar on stage.", "Nobody is playing any music."))


@dataclass
class Level:
    clients: int
    requests: int
    errors: int
    not_run: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    requests_per_second: float
    wall_seconds: float
    first_error: str | None


def _texts() -> list[str]:
    if EXAMPLES.is_file():
        lines = [t.strip() for t in EXAMPLES.read_text(encoding="utf-8").splitlines() if t.strip()]
        if lines:
            return lines
    return list(FALLBACK_TEXTS)


def app_inputs(url: str) -> tuple[list[Text], str]:
    """What to send the app at ``url`` (texts, or (first, second) pairs for a pair run) and where they come from:
    the app's own Playground examples when it offers them (``/examples``), else the shipped example sentences."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    try:
        offered = client.predict(api_name="/examples")
    except ValueError:  # no such endpoint: an app of an older version, which classified single texts only
        offered = None
    finally:
        client.close()
    return inputs_of(offered)


def inputs_of(offered) -> tuple[list[Text], str]:
    """The inputs an app's ``/examples`` answer asks for: its examples of the run's kind, else built-in ones."""
    offered = offered if isinstance(offered, dict) else {}
    pair = offered.get("pair")
    items = of_kind(offered.get("examples") or [], pairs=bool(pair))
    if items:
        return items, "the app's examples" + (" (pairs)" if pair else "")
    if pair:
        return list(FALLBACK_PAIRS), "built-in pairs"
    return _texts(), EXAMPLES.name if EXAMPLES.is_file() else "built-in texts"


def run_level(url: str, clients: int, predictions: int, deadline: float, api_name: str = "/predict",
              texts: list[Text] | None = None) -> Level:
    """``clients`` threads, each with its own client, each making ``predictions`` sequential calls with ``texts``
    (single texts or pairs; default: the shipped example sentences)."""
    from gradio_client import Client

    texts = texts or _texts()
    connected = [Client(url, verbose=False) for _ in range(clients)]  # connecting is not part of the timing
    latencies: list[float] = []
    errors: list[str] = []
    not_run = [0]
    lock = threading.Lock()
    start_line = threading.Barrier(clients)

    def work(index: int, client) -> None:
        start_line.wait()
        for i in range(predictions):
            if time.monotonic() > deadline:
                with lock:
                    not_run[0] += predictions - i
                return
            text = texts[(index * 7 + i) % len(texts)]
            t = time.perf_counter()
            try:
                client.predict(*(text if isinstance(text, tuple) else (text,)), api_name=api_name)
            except Exception as err:  # every failure is counted and the first one reported
                with lock:
                    errors.append(f"{type(err).__name__}: {err}"[:300])
                continue
            with lock:
                latencies.append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=work, args=(i, c), daemon=True) for i, c in enumerate(connected)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic() + 120))
    wall = time.perf_counter() - wall
    for client in connected:
        try:
            client.close()
        except Exception:  # closing is best effort; the figures are already taken
            pass
    lat = np.array(latencies)
    pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if len(lat) else (lambda q: None)
    return Level(clients=clients, requests=len(latencies) + len(errors), errors=len(errors), not_run=not_run[0],
                 p50_ms=pct(50), p95_ms=pct(95), max_ms=round(float(lat.max()), 1) if len(lat) else None,
                 requests_per_second=round(len(latencies) / wall, 2) if wall else 0.0, wall_seconds=round(wall, 1),
                 first_error=errors[0] if errors else None)


def load_test(url: str, levels: list[int], predictions: int, timeout: float, progress=None) -> dict:
    """Run each level in turn against ``url``; returns ``{"levels": [...], "settings": {...}}``."""
    if not levels or min(levels) < 1 or max(levels) > MAX_CLIENTS:
        raise LabError(f"client counts must be between 1 and {MAX_CLIENTS}, got {levels}")
    if not 1 <= predictions <= MAX_PREDICTIONS:
        raise LabError(f"predictions per client must be between 1 and {MAX_PREDICTIONS}, got {predictions}")
    if not url.startswith(("http://", "https://")):
        raise LabError(f"give the app's URL, like http://127.0.0.1:7860/ (got {url!r})")
    deadline = time.monotonic() + timeout
    results = []
    try:
        texts, source = app_inputs(url)
    except Exception as err:  # cannot connect (httpx errors are not OSError), or not a Gradio app
        raise LabError(f"cannot drive the app at {url}: {_first_line(err)}") from err
    for n in levels:
        if time.monotonic() > deadline:
            break
        if progress:
            progress(f"{n} client(s) x {predictions} predictions")
        try:
            results.append(run_level(url, n, predictions, deadline, texts=texts))
        except Exception as err:  # cannot connect, or not a Gradio app
            raise LabError(f"cannot drive the app at {url}: {_first_line(err)}") from err
    return {"levels": [asdict(r) for r in results],
            "settings": {"url": url, "predictions_per_client": predictions, "timeout_seconds": timeout,
                         "endpoint": "/predict", "texts": source,
                         "inputs": "text pairs" if is_pairs(texts) else "texts"}}


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]
