"""`charlm serve`: an HTTP API over the Sampler, following OpenAI's completions, and a page.

config.py       ServeConfig: address, device and the limits of a request (the CLI's options)
schema.py       request bodies checked and mapped onto the sampling settings
engine.py       one model's worker thread: requests drawn together in a Batch, pieces to asyncio
models.py       the loaded checkpoints, by name
completions.py  POST /v1/completions: JSON or server-sent events
app.py          the routes, bodies, errors, and the playground (static/index.html)

Needs the `serve` extra: pip install "charlm[serve]" (Starlette and Uvicorn).
"""

from charlm.serve.config import ServeConfig

__all__ = ["ServeConfig"]
