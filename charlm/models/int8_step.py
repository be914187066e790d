"""The int8 one-token step in C: every layer of an int8 model stepped in one call, and
where the model allows, the whole step (embedding, layers, output layer).

A sampler steps the network one token at a time. Through PyTorch's int8 operators a step of
a 2 x 512 character LSTM paid about as much in fixed costs per call (~45 us per int8 product,
a few us per operator from Python) as in reading its weights, so int8's quarter of the bytes
gained 1.3-1.8x over float32 where reading the weights alone could gain 4x
(docs/benchmarks.md). `charlm/models/_int8step.c` takes the whole stack's step in one call:
for each layer it quantizes x and h, multiplies them by the int8 weights (AVX2 where the CPU
has it, a portable loop elsewhere) and computes the gates; `NativeNetwork` adds the
embedding's rows before and the float32 output layer after, tokens in and scores out. Both
take at most MAX_ROWS rows, beyond which PyTorch's int8 matrix products are the faster.

The extension is built when charlm is installed, where a C compiler is; without it
`available()` is False and int8 models step through PyTorch's operators as before.

The quantization: each weight matrix, W_ih and W_hh apart, on one symmetric 8-bit scale per
output row, as `quantize` does for PyTorch's kernels; x and h each on one symmetric 7-bit
scale (±63) per row of the batch, at every step (PyTorch's dynamic quantization takes one
7-bit scale per tensor on x86). Why 7 bits: the C file's header.
"""

from __future__ import annotations

import torch
from torch import nn

from charlm.models.stepping import WEIGHT_NAMES, State

try:
    from charlm.models import _int8step as _native
except ImportError:  # installed without a C compiler
    _native = None


# The most rows the C step takes. Its products go row by row, each weight read again for every
# row; PyTorch's int8 matrix product (FBGEMM) reuses each weight it reads across the rows, and
# from a few rows on that is the faster (docs/benchmarks.md).
MAX_ROWS = 4


def available() -> bool:
    """Whether the C step was built with this installation."""
    return _native is not None


def kernel() -> str | None:
    """Which dot products this CPU runs: "avx2", "portable", or None without the C step."""
    return None if _native is None else _native.kernel()


def _padded(width: int) -> int:
    block = _native.COLUMN_BLOCK
    return -(-width // block) * block


def symmetric_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`weight` (out, in) as int8 and its scale per row: weight ≈ int8 · scale[:, None]."""
    weight = weight.detach().float()
    scales = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12)
    return torch.round(weight / scales[:, None]).to(torch.int8), scales


def laid_out(w_ih: torch.Tensor, w_hh: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A layer's two matrices as the C step reads them: [W_ih | 0 | W_hh | 0] as int8 plus
    WEIGHT_OFFSET in unsigned bytes, each part padded with zero columns to the kernel's block,
    and each part's scales per row."""
    (q_ih, x_scales), (q_hh, h_scales) = symmetric_int8(w_ih), symmetric_int8(w_hh)
    x_cols = _padded(w_ih.shape[1])
    weights = torch.zeros(w_ih.shape[0], x_cols + _padded(w_hh.shape[1]), dtype=torch.int16)
    weights[:, : w_ih.shape[1]] = q_ih
    weights[:, x_cols : x_cols + w_hh.shape[1]] = q_hh
    return (weights + _native.WEIGHT_OFFSET).to(torch.uint8), x_scales, h_scales


class NativeStep:
    """The stacked layers of an int8 model stepped in C: one call a token for all of them.

    Holds the laid-out weights; the C side holds only their addresses (`_native.stack`).
    """

    def __init__(
        self, layer: nn.Module, cell: str, nonlinearity: str = "tanh", portable: bool = False
    ) -> None:
        """`portable`: the plain C loop even on a CPU with AVX2 (to test it)."""
        code = {
            "lstm": _native.CELL_LSTM,
            "gru": _native.CELL_GRU,
            "rnn": _native.CELL_RNN_RELU if nonlinearity == "relu" else _native.CELL_RNN_TANH,
        }[cell]
        self.lstm, self.hidden = cell == "lstm", layer.hidden_size
        self.num_layers, self.input_size = layer.num_layers, layer.input_size
        self._tensors = []  # every layer's (weights, x_scales, h_scales, bias_ih, bias_hh)
        for index in range(layer.num_layers):
            w_ih, w_hh, b_ih, b_hh = (getattr(layer, f"{n}_l{index}") for n in WEIGHT_NAMES)
            biases = tuple(b.detach().float().contiguous() for b in (b_ih, b_hh))
            self._tensors.append(laid_out(w_ih, w_hh) + biases)
        sizes = [layer.input_size] + [layer.hidden_size] * (layer.num_layers - 1)
        self.capsule = _native.stack(code, self.hidden, tuple(
            (*(t.data_ptr() for t in tensors), size)
            for tensors, size in zip(self._tensors, sizes)
        ), portable)  # fmt: skip

    @staticmethod
    def takes(rows: int) -> bool:
        """Whether a step of `rows` rows is faster here than through PyTorch's operators."""
        return rows <= MAX_ROWS

    def checked_state(self, rows: int, state: State) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`state` for `rows` rows as contiguous float32 (h, c; c None but for an LSTM);
        ValueError for a state of another shape, before the C code reads it."""
        shape = (self.num_layers, rows, self.hidden)
        h, c = (state[0], state[1]) if self.lstm else (state, None)
        if h.shape != shape or (self.lstm and c.shape != shape):
            raise ValueError(f"int8 step: state {tuple(h.shape)}; expected {shape}")
        return h.float().contiguous(), None if c is None else c.float().contiguous()

    def __call__(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x (batch, input) → the top layer's output (batch, hidden) and the new state."""
        # Few tensor operations: from Python each costs about a microsecond, 1% of a 2 x 512
        # LSTM's step in C.
        rows = x.shape[0]
        if x.shape != (rows, self.input_size):
            raise ValueError(
                f"int8 step: input {tuple(x.shape)}; expected ({rows}, {self.input_size})"
            )
        h, c = self.checked_state(rows, state)
        x, h_new = x.float().contiguous(), _floats(h.shape)
        c_new = _floats(h.shape) if self.lstm else None
        _native.stack_step(
            self.capsule, x.data_ptr(), h.data_ptr(), _address(c), h_new.data_ptr(),
            _address(c_new), rows,
        )  # fmt: skip
        return h_new[-1], (h_new, c_new) if self.lstm else h_new


class NativeNetwork:
    """A whole int8 model's one-token step in one C call: the embedding (float32), the int8
    layers of `stack`, a float32 output layer. With the embedding, the output layer and
    their calls from Python left outside, a 2 x 512 character LSTM sampled 1.3x slower at
    batch 1 (42 us more a token, docs/benchmarks.md).

    For models whose tokens are embedded and scored by a plain `nn.Linear`, without labels:
    `fits` says which.
    """

    def __init__(self, stack: NativeStep, embedding: nn.Embedding, head: nn.Linear) -> None:
        if embedding.embedding_dim != stack.input_size or head.in_features != stack.hidden:
            raise ValueError("int8 network: the embedding, layers and output layer do not fit")
        self._stack = stack  # keeps the capsule and the weights the C side reads
        self.vocab = head.out_features
        self._embedding = embedding.weight.detach().float().contiguous()
        self._head_weight = head.weight.detach().float().contiguous()
        bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
        self._head_bias = bias.detach().float().contiguous()
        self._network = _native.network(
            stack.capsule, self._embedding.data_ptr(), self._embedding.shape[0],
            self._head_weight.data_ptr(), self._head_bias.data_ptr(), self.vocab,
        )  # fmt: skip

    takes = staticmethod(NativeStep.takes)

    @staticmethod
    def fits(embedding: nn.Module | None, head: nn.Module) -> bool:
        """Whether a model with this embedding and output layer can step as one C call."""
        return isinstance(embedding, nn.Embedding) and type(head) is nn.Linear

    def __call__(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """tokens (batch,) → the scores (batch, vocab) and the new state."""
        if tokens.dim() != 1:
            raise ValueError(f"int8 step: tokens {tuple(tokens.shape)}; expected (batch,)")
        h, c = self._stack.checked_state(tokens.shape[0], state)
        tokens = tokens.to(torch.long).contiguous()
        h_new, logits = _floats(h.shape), _floats((tokens.shape[0], self.vocab))
        lstm = self._stack.lstm
        c_new = _floats(h.shape) if lstm else None
        _native.network_step(
            self._network, tokens.data_ptr(), h.data_ptr(), _address(c), h_new.data_ptr(),
            _address(c_new), logits.data_ptr(), tokens.shape[0],
        )  # fmt: skip
        return logits, (h_new, c_new) if lstm else h_new


def _floats(shape: tuple[int, ...]) -> torch.Tensor:
    # float32 whatever torch's default dtype: the C code writes 4-byte floats.
    return torch.empty(shape, dtype=torch.float32)


def _address(tensor: torch.Tensor | None) -> int:
    return 0 if tensor is None else tensor.data_ptr()
