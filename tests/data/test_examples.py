"""The example iterator: own start and end per example, bucketed, padded, padding invariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charlm.data import (
    DataOptions,
    ExampleIds,
    LabelSet,
    count_example_batches,
    example_batches,
    pad_examples,
    prepare_examples,
)
from charlm.data.prepare_examples import tokenizer_for
from charlm.errors import ConfigError, CorpusError, UnknownTokenError
from charlm.models import CELLS, IMPLS, LABEL_INPUTS, ModelConfig, build_model
from charlm.tokenizers import train_tokenizer
from tests.helpers import single_thread

END = 9


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def random_examples(count: int, seed: int = 0, most: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, END, size=rng.integers(1, most)) for _ in range(count)]


def test_a_padded_batch_starts_ends_and_masks_each_example():
    batch = pad_examples([[1, 2, 3], [4]], END, labels=[1, 0])
    assert batch.inputs.tolist() == [[END, 1, 2, 3], [END, 4, END, END]]
    assert batch.targets.tolist() == [[1, 2, 3, END], [4, END, END, END]]
    assert batch.mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.labels.tolist() == [1, 0] and batch.num_targets == 6


def test_an_epoch_holds_every_example_once_in_batches_of_alike_lengths():
    examples = random_examples(300)
    ids = ExampleIds.from_lists(examples, labels=list(range(300)))
    seen = []
    for batch in example_batches(ids, 16, end_id=END, seed=1):
        seen += batch.labels.tolist()
        lengths = batch.mask.sum(dim=1)
        assert lengths.max() - lengths.min() <= 2  # bucketed: little padding
        for row, label in enumerate(batch.labels.tolist()):
            n = len(examples[label])
            assert batch.inputs[row, 1 : n + 1].tolist() == examples[label].tolist()
    assert sorted(seen) == list(range(300))
    assert count_example_batches(ids, 16, None, seed=1) == 19


def test_the_order_is_fixed_by_the_seed_and_unshuffled_draws_nothing():
    ids = ExampleIds.from_lists(random_examples(100), labels=list(range(100)))

    def order(**kwargs):
        return [b.labels.tolist() for b in example_batches(ids, 8, end_id=END, **kwargs)]

    assert order(seed=3) == order(seed=3) != order(seed=4)
    assert order(shuffle=False, seed=1) == order(shuffle=False, seed=2)
    assert sorted(sum(order(shuffle=False), [])) == list(range(100))
    assert all(len(b) == 8 for b in order(seed=3, drop_last=True))


def test_long_examples_come_in_windows_that_carry_the_state():
    examples = [np.arange(2, 4), np.arange(1, 8)]  # shortest first, as batches sort them
    ids = ExampleIds.from_lists(examples)
    windows = list(example_batches(ids, 2, end_id=END, seq_len=3, shuffle=False))
    assert [w.continues for w in windows] == [False, True, True]
    whole = pad_examples(examples, END)
    assert torch.equal(torch.cat([w.inputs for w in windows], dim=1), whole.inputs)
    assert torch.equal(torch.cat([w.mask for w in windows], dim=1), whole.mask)
    assert count_example_batches(ids, 2, 3) == 3


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("label_input", [None, *LABEL_INPUTS])
def test_padding_never_changes_an_examples_loss(cell, impl, label_input):
    # Each example's loss in a padded batch equals its loss alone, to 1e-5.
    torch.manual_seed(0)
    labels = 3 if label_input else 0
    model = build_model(
        ModelConfig(END + 1, cell=cell, impl=impl, embed_size=6, hidden_size=10, num_layers=2,
                    dropout=0.0, end_token=True, num_labels=labels,
                    label_input=label_input or "token")
    ).eval()  # fmt: skip
    examples = random_examples(6, seed=2, most=15)
    tags = [i % 3 for i in range(6)] if labels else None
    with torch.no_grad():
        batch = pad_examples(examples, END, tags)
        nll, _ = model(batch.inputs, targets=batch.targets, labels=batch.labels)
        padded = (nll * batch.mask).sum(dim=1)
        for row, example in enumerate(examples):
            alone = pad_examples([example], END, None if tags is None else [tags[row]])
            loss, _ = model(alone.inputs, targets=alone.targets, labels=alone.labels)
            assert abs(loss.sum().item() - padded[row].item()) < 1e-5


def test_a_label_set_names_its_labels_and_their_prior():
    labels = LabelSet(["Czech", "Irish", "Russian"], [1, 1, 2])
    assert labels.index("Irish") == 1
    with pytest.raises(ConfigError, match="did you mean Russian.*Czech, Irish, Russian"):
        labels.index("Rusian")
    assert np.exp(labels.log_prior()).tolist() == pytest.approx([0.25, 0.25, 0.5])
    assert np.exp(labels.log_prior("uniform")).tolist() == pytest.approx([1 / 3] * 3)
    assert LabelSet.from_dict(labels.to_dict()) == labels


def write_names(root, **labels: list[str]):
    root.mkdir(parents=True, exist_ok=True)
    for label, names in labels.items():
        (root / f"{label}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return root


def test_prepared_examples_end_one_past_the_tokenizer_and_index_the_labels(tmp_path):
    names = write_names(
        tmp_path / "names",
        ab=[f"a{'b' * i}" for i in range(20)],
        xy=[f"x{'y' * i}" for i in range(10)] + ["x"],  # "x" twice
    )
    prepared = prepare_examples(names, DataOptions(labels="files", val_fraction=0.2))
    assert prepared.end_id == prepared.tokenizer.vocab_size
    assert prepared.labels.names == ["ab", "xy"]
    assert len(prepared.val) in (6, 7)  # 4 of 20 and 2 of 10 distinct texts; "x" twice
    assert sum(prepared.labels.counts) + len(prepared.val) == 31
    assert prepared.train.num_targets == int(prepared.train.lengths.sum()) + len(prepared.train)
    decoded = {prepared.tokenizer.decode(prepared.train.example(i).tolist()) for i in range(3)}
    assert decoded <= {f"a{'b' * i}" for i in range(20)} | {f"x{'y' * i}" for i in range(10)}
    assert any("duplicates: 1 examples repeat" in line for line in prepared.report())
    assert not any("only one label" in line for line in prepared.report())


def test_a_given_tokenizer_names_every_unseen_character_of_the_examples(tmp_path):
    # As --init-from hands a model's tokenizer over: every piece it lacks, with its count,
    # not only those of the first example that has one.
    names = write_names(tmp_path / "names", ab=["abé", "ab", "aç", "açç"], xy=["xyò"])
    given = train_tokenizer("char", "abxy")
    with pytest.raises(UnknownTokenError) as error:
        prepare_examples(names, DataOptions(labels="files", val_fraction=0), tokenizer=given)
    summary = error.value.summary
    assert "3 characters the model never saw (5 in all): 'ç' ×3" in summary
    assert all(f"{piece!r}" in summary for piece in "éçò")


def test_the_reading_report_says_which_rows_and_labels_an_empty_text_cost(tmp_path):
    table = tmp_path / "t.tsv"
    rows = [("good film", "pos"), ("bad film", "neg"), ("", "neutral"), (" ", "neutral")] * 3
    lines = "".join(f"{text}\t{label}\n" for text, label in rows)
    table.write_text("text\tlabel\n" + lines, "utf-8")
    prepared = prepare_examples(table, DataOptions(labels="table", val_fraction=0))
    read = next(line for line in prepared.report() if line.startswith("read 1 file"))
    assert read.endswith(
        "; 6 rows with an empty text skipped; the label neutral has no example: all its texts "
        "are empty"
    )
    assert prepared.info["examples"]["skipped_empty"] == 6


def test_a_single_label_is_pointed_out(tmp_path):
    names = write_names(tmp_path / "names", ab=[f"a{'b' * i}" for i in range(20)])
    report = prepare_examples(names, DataOptions(labels="files", val_fraction=0.2)).report()
    assert any("1 label," in line for line in report)
    assert any("only one label (ab): the model cannot tell labels apart" in line for line in report)


def test_a_validation_directory_is_read_like_the_training_data(tmp_path):
    train = write_names(tmp_path / "train", ab=["ab", "abb"], xy=["xy"])
    val = write_names(tmp_path / "val", ab=["abbb"])
    prepared = prepare_examples(train, DataOptions(labels="files", val_file=str(val)))
    assert len(prepared.train) == 3 and len(prepared.val) == 1
    strange = write_names(tmp_path / "strange", zz=["ab"])
    with pytest.raises(CorpusError, match="labels the training examples lack: zz"):
        prepare_examples(train, DataOptions(labels="files", val_file=str(strange)))


def test_too_few_texts_for_a_validation_split_say_what_to_change(tmp_path):
    names = write_names(tmp_path / "names", ab=["ab"])
    with pytest.raises(CorpusError, match="--val-fraction"):
        prepare_examples(names, DataOptions(labels="files"))


def test_sentences_are_read_as_words_and_names_as_characters():
    assert tokenizer_for(["Hinton", "Nguyen", "van der Berg"]) == ("char", 1)
    assert tokenizer_for(["a joy to watch from start to end", "dull", "not good at all"]) == (
        "word",
        4,
    )
    assert tokenizer_for(["这本书很好看，推荐给大家", "不好看"])[0] == "char"  # no spaces
