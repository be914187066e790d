"""The server on checkpoints loaded from disk with their labels: a classifier (`--task
classify`) classifies through the same Sampler.classify as `charlm classify`, and refuses
completions and scores with one line; a labelled language model keeps its labels too."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

import charlm
from charlm.data import DataOptions
from charlm.serve.app import create_app
from charlm.serve.models import load_models
from charlm.training import TrainConfig, train_book
from tests.helpers import write_labelled_names
from tests.serve.conftest import SMALL_LIMITS

TINY = {"hidden_size": 16, "embed_size": 8, "num_layers": 1, "dropout": 0.0}
LABELLED = DataOptions(labels="files", examples="lines", val_fraction=0.1, test_fraction=0.1)


def _train(root, name, **model):
    names = write_labelled_names(root / "names")
    training = TrainConfig(batch_size=8, lr=0.02, max_steps=40, epochs=50, seed=1)
    return train_book(
        names, out=root / name, model={**TINY, **model}, training=training, data=LABELLED,
        device="cpu",
    ).checkpoint  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    return {
        "classifier": _train(root, "classifier", task="classify", bidirectional=True),
        "lm": _train(root, "lm"),
    }


@pytest.fixture(scope="module")
def client(checkpoints):
    models = load_models([checkpoints["classifier"], checkpoints["lm"]], SMALL_LIMITS)
    with TestClient(create_app(models, SMALL_LIMITS), base_url="http://localhost") as client:
        yield client


@pytest.mark.parametrize("name", ["classifier", "lm"])
def test_a_served_checkpoint_classifies_as_charlm_load_does(client, checkpoints, name):
    texts = ["Abba", "Xyzzy"]
    body = {"model": name, "inputs": texts, "top_k": 2}
    answer = client.post("/v1/classify", json=body)
    assert answer.status_code == 200, answer.text
    loaded = charlm.load(checkpoints[name], device="cpu")
    # The classifier pretrained its encoder and kept the labelled LM: the server joins it too.
    assert (loaded.generative is not None) == (name == "classifier")
    expected = loaded.classify(texts, top_k=2)
    for row, want in zip(answer.json()["data"], expected, strict=True):
        assert [s["label"] for s in row["labels"]] == [s.label for s in want.labels]
        got = [s["score"] for s in row["labels"]]
        assert got == pytest.approx([s.probability for s in want.labels])


def test_the_model_cards_list_the_labels(client):
    cards = {card["id"]: card for card in client.get("/v1/models").json()["data"]}
    assert cards["classifier"]["labels"] == cards["lm"]["labels"] == ["ab", "xyz"]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/completions", {"prompt": "", "label": "ab", "max_tokens": 5}),
        ("/v1/score", {"input": "Abba", "label": "ab"}),
    ],
)
def test_a_classifier_refuses_to_generate_or_score_in_one_line(client, path, body):
    answer = client.post(path, json={"model": "classifier", **body})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "classifier" in error["message"] and "\n" not in error["message"]
    assert error["param"] == "model"  # the model is at fault, not the label
