"""The engine: requests drawn together give the text each gives alone; a cancelled request
stops within a couple of tokens; one bad request fails alone."""

from __future__ import annotations

import asyncio

import pytest

from charlm.errors import UnknownTokenError
from charlm.sampling.options import SamplingOptions
from charlm.sampling.request import make_request
from charlm.serve.engine import Engine
from tests.serve.conftest import SlowCalls

REQUESTS = [
    ("the ", 300, 1, 0.8),
    ("a stitch ", 250, 2, 0.5),
    ("", 280, 3, 1.0),
    ("dog", 260, 4, 0),
]


def sampler_request(prefix, length, seed, temperature, num_samples=1):
    options = SamplingOptions(
        length=length, seed=seed, temperature=temperature, num_samples=num_samples
    )
    return make_request(prefix, options)


async def collect(job) -> dict[int, str]:
    await job.started()
    texts: dict[int, str] = {}
    while (pieces := await job.pieces()) is not None:
        for piece in pieces:
            texts[piece.sample] = texts.get(piece.sample, "") + piece.text
    return texts


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "in turn"])
def test_requests_at_once_give_the_text_each_gives_alone(sampler, batch):
    engine = Engine(sampler, max_batch=64, batch=batch)
    peak = 0

    async def run():
        nonlocal peak
        jobs = [engine.submit(sampler_request(*r)) for r in REQUESTS]
        tasks = [asyncio.ensure_future(collect(job)) for job in jobs]
        while not all(task.done() for task in tasks):
            peak = max(peak, engine.active_rows)
            await asyncio.sleep(0.002)
        return [task.result() for task in tasks]

    try:
        results = asyncio.run(run())
    finally:
        engine.close()
    for texts, (prefix, length, seed, temperature) in zip(results, REQUESTS):
        assert prefix + texts[0] == sampler.generate(prefix, length, temperature, seed)
    assert peak > 1  # they were drawn at the same time, not one after the other


def test_a_cancelled_request_stops_within_a_couple_of_tokens(sampler):
    engine = Engine(sampler, max_batch=64)

    async def run():
        job = engine.submit(sampler_request("the ", 100_000, 1, 1.0))
        other = engine.submit(sampler_request("a ", 200, 2, 1.0))
        await job.started()
        for _ in range(5):
            await job.pieces()
        seen = job.drawing.steps
        job.cancel()
        for _ in range(1000):  # bounded: the worker drops it at its next step
            if engine.active_rows <= 1:
                break
            await asyncio.sleep(0.005)
        return job.drawing.steps - seen, await collect(other)

    try:
        extra_steps, other_texts = asyncio.run(run())
    finally:
        engine.close()
    assert extra_steps <= 2
    assert "a " + other_texts[0] == sampler.generate("a ", 200, 1.0, 2)


def test_a_request_the_model_cannot_take_fails_alone(sampler):
    engine = Engine(sampler, max_batch=64)

    async def run():
        bad = engine.submit(sampler_request("the €", 10, 1, 1.0))
        good = engine.submit(sampler_request("the ", 10, 1, 1.0))
        with pytest.raises(UnknownTokenError):
            await bad.started()
        return await collect(good)

    try:
        assert len(asyncio.run(run())[0]) == 10
    finally:
        engine.close()


def test_requests_beyond_the_batch_wait_for_room(sampler):
    engine = Engine(sampler, max_batch=3)
    peak = 0

    async def run():
        nonlocal peak
        jobs = [engine.submit(sampler_request("the ", 120, s, 1.0, num_samples=2)) for s in (1, 5)]
        tasks = [asyncio.ensure_future(collect(job)) for job in jobs]
        while not all(task.done() for task in tasks):
            peak = max(peak, engine.active_rows)
            await asyncio.sleep(0.002)
        return [task.result() for task in tasks]

    try:
        first, second = asyncio.run(run())
    finally:
        engine.close()
    assert peak == 2  # the second pair never joined the first: 4 rows would pass 3
    assert "the " + second[1] == sampler.generate("the ", 120, 1.0, 6)


def test_pieces_drawn_within_the_interval_are_handed_over_together(sampler):
    """The first piece at once, then at most one hand-over per interval; nothing is lost."""

    async def hand_overs(interval):
        engine = Engine(sampler, max_batch=64, interval=interval)
        try:
            job = engine.submit(sampler_request("the ", 200, 7, 0.8))
            await job.started()
            sizes = []
            while (pieces := await job.pieces()) is not None:
                sizes.append(len(pieces))
            return sizes
        finally:
            engine.close()

    every_piece = asyncio.run(hand_overs(0.0))
    assert len(every_piece) > 20  # the loop keeps up with the tiny model most of the time
    held = asyncio.run(hand_overs(60.0))
    assert held == [1, 199]  # the first piece, then the rest at the end
    assert sum(every_piece) == 200


def test_a_long_prompt_is_read_in_parts_while_the_others_go_on_drawing(sampler):
    """A prompt of many forward calls takes turns with the running requests' steps (one
    step between two of its calls), and gives the text it gives primed in one go."""
    sampler._chunk_len = 16  # a forward call reads 16 tokens: the prompt below takes 40
    long_prompt = ("the lazy dog " * 50)[:640]
    engine = Engine(sampler, max_batch=64)
    steps_at_call: list[int] = []

    async def run():
        running = engine.submit(sampler_request("a ", 100_000, 1, 1.0))
        await running.started()
        await running.pieces()
        call = sampler._call

        def counted(tokens, state, labels):  # priming calls; a drawing's steps go by model.step
            steps_at_call.append(running.drawing.steps)
            return call(tokens, state, labels)

        sampler._call = counted
        texts = await collect(engine.submit(sampler_request(long_prompt, 30, 5, 0.8)))
        del sampler._call
        running.cancel()
        await collect(running)
        return texts

    try:
        texts = asyncio.run(run())
    finally:
        engine.close()
    assert len(steps_at_call) == 40
    # The running request took a step between any two parts of the prompt.
    assert all(later > earlier for earlier, later in zip(steps_at_call, steps_at_call[1:]))
    assert long_prompt + texts[0] == sampler.generate(long_prompt, 30, 0.8, 5)


def test_a_request_cancelled_while_it_waits_for_room_leaves_the_queue_at_once(sampler):
    engine = Engine(sampler, max_batch=1)

    async def run():
        running = engine.submit(sampler_request("the ", 100_000, 1, 1.0))
        await running.started()
        waiting = engine.submit(sampler_request("a ", 50, 2, 1.0))  # no room: it waits
        await asyncio.sleep(0.05)
        assert engine.waiting == 1
        waiting.cancel()
        assert engine.waiting == 0  # out of the queue now, not once the running one is done
        assert await waiting.pieces() is None and waiting.drawing is None  # never primed
        assert engine.active_rows == 1  # the other goes on
        running.cancel()
        await collect(running)

    try:
        asyncio.run(run())
    finally:
        engine.close()


def test_a_request_cancelled_while_its_prompt_is_read_stops_being_read(sampler):
    calls = SlowCalls(sampler, chunk_len=4)  # 250 forward calls for the prompt below
    engine = Engine(sampler, max_batch=64)

    async def run():
        job = engine.submit(sampler_request("the lazy dog " * 77, 50, 1, 1.0))
        while calls.count < 5:
            await asyncio.sleep(0.001)
        job.cancel()
        seen = calls.count
        await job.started()
        assert await job.pieces() is None and job.drawing is None
        return calls.count - seen

    try:
        extra_calls = asyncio.run(run())
    finally:
        engine.close()
    assert extra_calls <= 1  # the part being read when it was cancelled, no more
    assert engine.waiting == 0 and engine.active_rows == 0
