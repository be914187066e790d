"""`SamplingOptions`: one type for every entry point, its checks, and its JSON form."""

import dataclasses
import json

import numpy as np
import pytest

from charlm.errors import ConfigError
from charlm.sampling import Sampler, SamplingOptions
from charlm.sampling.options import rule_of
from tests.sampling.test_sampler import ABC, ABC_TABLE
from tests.tiny_models import BigramLM


@pytest.fixture
def bigram() -> Sampler:
    return Sampler(BigramLM(ABC_TABLE), ABC)


def test_keywords_positions_and_an_options_object_draw_the_same_text(bigram):
    options = SamplingOptions(length=30, temperature=0.5, seed=3, top_k=2)
    text = bigram.generate("a", options=options)
    assert text == bigram.generate("a", length=30, temperature=0.5, seed=3, top_k=2)
    assert text == bigram.generate("a", 30, 0.5, 3, top_k=2)
    assert text == "a" + "".join(bigram.stream("a", options=options))
    assert text == "a" + bigram.samples("a", options=options)[0].text


def test_keywords_change_the_given_options(bigram):
    options = SamplingOptions(length=30, seed=3)
    assert bigram.generate("a", options=options, seed=4) == bigram.generate("a", 30, seed=4)
    assert bigram.generate("a", options=options, seed=4) != bigram.generate("a", options=options)


def test_calls_that_cannot_mean_anything_are_refused(bigram):
    with pytest.raises(TypeError, match="at most 4 positional"):
        bigram.generate("a", 5, 1.0, 2, 7)
    with pytest.raises(TypeError, match="both by position and by keyword"):
        bigram.generate("a", 5, length=6)
    with pytest.raises(TypeError, match="SamplingOptions"):
        bigram.generate("a", options={"length": 5})
    with pytest.raises(ConfigError, match="samples"):
        bigram.stream("a", length=5, num_samples=2)
    with pytest.raises(ConfigError, match="did you mean temperature"):
        bigram.generate("a", tempreature=0.5)
    with pytest.raises(TypeError):  # by position, length would silently become temperature
        SamplingOptions(0.5)


def test_values_are_kept_in_one_normal_form():
    options = SamplingOptions(temperature=1, stop="\n\n")
    assert options.temperature == 1.0 and isinstance(options.temperature, float)
    assert options.stop == ("\n\n",)
    assert options == SamplingOptions(temperature=1.0, stop=["\n\n"])


def test_none_numpy_numbers_and_a_huge_count_are_read_as_meant():
    assert SamplingOptions(stop=None).stop == () == SamplingOptions.from_dict({"stop": None}).stop
    options = SamplingOptions(length=np.int64(5), seed=np.uint32(3), temperature=np.float32(0.5))
    assert options == SamplingOptions(length=5, seed=3, temperature=0.5)
    assert type(options.length) is int and type(options.temperature) is float
    with pytest.raises(ConfigError, match="num_samples must be an integer in"):
        SamplingOptions(num_samples=10**20)  # not an error about the seed it leaves no room for
    with pytest.raises(ConfigError, match="length must be an integer"):
        SamplingOptions(length=np.float64(5.0))
    # An integer past a float's range is out of range like any other, and said briefly.
    for name in ("temperature", "seed", "top_k", "top_p"):
        with pytest.raises(
            ConfigError, match=f"^{name} must be .*, got 10000.*… \\(very large\\)$"
        ):
            SamplingOptions(**{name: 10**400})


def test_replace_checks_the_copy_and_leaves_the_original():
    options = SamplingOptions(top_k=5)
    assert options.replace(top_k=None, seed=7) == SamplingOptions(seed=7)
    assert options.top_k == 5
    with pytest.raises(ConfigError, match="top_k"):
        options.replace(top_k=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.top_k = 3


def test_a_json_round_trip_gives_the_same_options():
    options = SamplingOptions(
        length=12, temperature=0.0, top_k=4, top_p=0.9, min_p=0.05, repetition_penalty=1.3,
        stop=("\n", "THE END"), num_samples=2, seed=11, unknown="skip", allow_unk=True,
    )  # fmt: skip
    data = json.loads(json.dumps(options.to_dict()))
    assert data["stop"] == ["\n", "THE END"]
    assert SamplingOptions.from_dict(data) == options
    assert SamplingOptions.from_dict({}) == SamplingOptions()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"temperature": "hot"}, "temperature must be a number >= 0"),
        ({"temperature": float("inf")}, "temperature must be >= 0"),
        ({"length": 2.5}, "length must be an integer >= 0, got 2.5"),
        ({"length": True}, "length must be an integer"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"min_p": 1.01}, r"min_p must be in \[0, 1\], got 1.01"),
        ({"min_p": "0.1"}, r"min_p must be a number in \[0, 1\]"),
        ({"stop": [1]}, "stop must be a non-empty string, got 1"),
        ({"stop": 5}, "stop must be a string or a list of strings"),
        ({"seed": "7"}, "seed must be an integer"),
        ({"seed": 2**63 - 2, "num_samples": 2}, r"seed must be in \[0, "),
        ({"unknown": "ignore"}, "unknown must be one of error, skip, unk"),
        ({"allow_unk": "yes"}, "allow_unk must be true or false"),
        (
            {"beam_width": 2, "top_k": 3, "top_p": 0.5},
            "top_k, top_p apply to sampling, not to beam",
        ),
        ({"beam_width": 2, "num_samples": 3}, "at most beam_width=2"),
        ({"temprature": 0.5}, "unknown sampling option 'temprature'; did you mean temperature"),
        (["length", 5], "must be an object, got list"),
    ],
)
def test_a_bad_json_object_is_one_clear_error(data, message):
    with pytest.raises(ConfigError, match=message) as caught:
        SamplingOptions.from_dict(data)
    assert "\n" not in str(caught.value)


# A value other than the default for every option beam search refuses
SAMPLING_ONLY = {
    "top_k": 3, "top_p": 0.5, "min_p": 0.1, "repetition_penalty": 2.0, "stop": "x", "guidance": 1.0
}  # fmt: skip


def test_beam_search_ignores_temperature_and_seed_but_refuses_what_belongs_to_sampling():
    SamplingOptions(beam_width=3, temperature=0.3, seed=4, num_samples=3)
    refused = [f.name for f in dataclasses.fields(SamplingOptions) if rule_of(f).sampling_only]
    assert sorted(refused) == sorted(SAMPLING_ONLY)
    for name, value in SAMPLING_ONLY.items():
        SamplingOptions(**{name: value})  # fine when sampling
        with pytest.raises(ConfigError, match=f"{name} applies to sampling"):
            SamplingOptions(beam_width=2, **{name: value})
