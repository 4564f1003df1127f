import socket
import threading

import pytest

from compression.dashboard.tables import predictions_table, variants_table

from .conftest import run_cli


def test_variants_table_formats_ci_and_blanks():
    table = variants_table([
        {"name": "teacher", "kind": "teacher", "parent": None, "accuracy": 0.9, "accuracy_ci": [0.88, 0.92],
         "size_mb": 90.0, "bundle": "/x"},
        {"name": "s", "kind": "student", "parent": "teacher", "accuracy": None, "accuracy_ci": [None, None],
         "size_mb": None, "bundle": "/y"},
    ])
    assert list(table["95% CI"]) == ["0.880 – 0.920", ""]
    assert list(table["parent"]) == ["", "teacher"]


def test_predictions_table_flags_disagreement():
    table = predictions_table([
        {"name": "teacher", "label": "pos", "confidence": 0.9, "latency_ms": 12.34},
        {"name": "a", "label": "pos", "confidence": 0.8, "latency_ms": 3.0},
        {"name": "b", "label": "neg", "confidence": 0.6, "latency_ms": 2.0},
    ], teacher="teacher")
    assert list(table["agrees with teacher"]) == ["", "yes", "NO"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_app(tiny_model, tiny_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    recipe = folder / "tiny.yaml"
    recipe.write_text(f"name: tiny\ndata:\n  source: {tiny_data}\nteacher:\n  model: {tiny_model}\n  max_length: 32\n")
    assert run_cli("build", str(recipe), "--store", str(folder / "store")).returncode == 0
    from compression.dashboard import create_app, theme

    demo = create_app(str(folder / "store"))
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, theme=theme())
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_api_predict_through_gradio_client(served_app):
    from gradio_client import Client

    client = Client(served_app, verbose=False)
    table, note = client.predict("a great and moving film", api_name="/predict")
    assert table["headers"][:2] == ["variant", "label"]
    assert [row[0] for row in table["data"]] == ["teacher"]
    assert note == ""
    with pytest.raises(Exception, match="Type a sentence first"):
        client.predict("   ", api_name="/predict")
