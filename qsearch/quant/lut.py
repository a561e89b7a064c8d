"""Logic-circuit building blocks (issue 28, first part): the thermometer encoding of a normalized
observation, and layers of k-input lookup tables trained by gradient, after Differentiable Weightless
Neural Networks (DWN; Bacellar et al., ICML 2024), which Differentiable Weightless Controllers (Kresse
and Lampert, ICML 2026) train with RL.

A LUT layer's node j reads k bits of its input (its mapping), forms the address a = sum_l bit_l 2^l and
outputs table[j, a], a float in [-1, 1] while training whose sign is the bit it passes on (binarized
straight through: the gradient passes unchanged). The gradient of the lookup is DWN's extended finite
difference (EFD) as torch-dwn 1.1.1's CUDA kernel computes it (decaying exponentially with the Hamming
distance, the "improved" EFD of its README):

    d table[j, a] += g                                     (the addressed entry only)
    d bit_l       += g * sum_a' table[j, a'] * alpha * beta^H(a, a'; all bits but l) * (+1 if bit l of a' else -1)

torch-dwn has this for CUDA only (its CPU backward raises). Here it runs on the CPU, vectorized: the sum
over a' depends on the table and on (a, l), not on the sample, so a backward is one matrix product of
the tables with a constant (2^k, 2^k * k) matrix, then one gather per sample.

A learnable mapping (DWN's LearnableMapping) chooses each node input by the argmax of a learned column
of scores over the layer's inputs; its backward gives the scores (2 x - 1)^T g and the inputs g through
softmax(scores / tau). DWN recommends it for the first layer only. It costs: a two-layer stack of 256
6-input nodes each over 11 x 16 thermometer bits, batch 256, forward, backward and Adam, ~3.1-3.5 ms
with random mappings, ~11 ms with a learnable first layer (its two products with the batch and the
scores' Adam), against 1.5 ms for a width-64 QAT MLP actor's update (one core, 2026-12-07).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def gaussian_thresholds(bits: int) -> torch.Tensor:
    """The thermometer's thresholds for a normalized value (mean 0, std 1): the Gaussian's quantiles at
    i / (bits + 1), i = 1..bits (DWN's GaussianThermometer on standardized data)."""
    return torch.special.ndtri(torch.arange(1, bits + 1, dtype=torch.float64) / (bits + 1)).float()


def thermometer(x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(B, D) normalized observations -> (B, D * len(thresholds)) bits, feature by feature: bit i of a
    feature is 1 when the value reaches threshold i. A feature's level (its bits' sum) is the number of
    thresholds it reaches, which is what integer hardware compares."""
    return (x[..., None] >= thresholds).flatten(-2).float()


def efd_matrix(k: int, alpha: float, beta: float) -> torch.Tensor:
    """M of shape (2^k, 2^k * k) with (tables @ M)[j, a * k + l] the EFD weight of input l of node j
    at address a (the module docstring's sum over a')."""
    size = 2**k
    a_in = torch.arange(size)[:, None, None]  # a'
    a = torch.arange(size)[None, :, None]
    l = torch.arange(k)[None, None, :]
    others = (a_in ^ a) & ~(1 << l)  # the bits other than l in which a' and a differ
    distance = sum((others >> b) & 1 for b in range(k))
    sign = torch.where((a_in >> l) & 1 == 1, 1.0, -1.0)
    return (alpha * beta ** distance.double() * sign).float().reshape(size, size * k)


class _Lookup(torch.autograd.Function):
    """table[j, address(bits[:, mapping[j]])] for every node j, with the EFD backward. bits are 0/1
    floats (a thermometer's or a LUT layer's), so an address is a sum of powers of 2, exact in float32.

    Works on bits^T (inputs x batch) and returns out^T's transpose: gathering whole rows (one per node
    and address bit) and adding them is ~3x faster on these machines than gathering (batch, node, bit)
    elements, and a layer's output, a transposed view, is the next layer's bits^T without a copy."""

    @staticmethod
    def forward(ctx, bits, tables, mapping, efd):
        (n, size), k = tables.shape, mapping.shape[1]
        rows = bits.T.contiguous()  # (inputs, batch)
        columns = mapping.T.contiguous()  # (k, n)
        address = rows.index_select(0, columns[0])
        for l in range(1, k):
            address.add_(rows.index_select(0, columns[l]), alpha=2**l)
        flat = (address.long() + torch.arange(0, n * size, size, device=bits.device)[:, None]).reshape(-1)
        ctx.save_for_backward(tables, columns, efd, flat)
        ctx.input_size = bits.shape[1]
        return tables.reshape(-1).index_select(0, flat).reshape(n, -1).T

    @staticmethod
    def backward(ctx, g):
        tables, columns, efd, flat = ctx.saved_tensors
        (n, size), k = tables.shape, columns.shape[0]
        g_rows = g.T.contiguous().reshape(-1)  # (n * batch)
        d_tables = torch.zeros(n * size, dtype=g.dtype, device=g.device).index_add_(0, flat, g_rows)
        weights = (tables @ efd).reshape(n * size, k).T.contiguous()  # (k, n * size): bit l's EFD weight at every address
        d_rows = torch.zeros(ctx.input_size, g.shape[0], dtype=g.dtype, device=g.device)
        for l in range(k):
            d_rows.index_add_(0, columns[l], weights[l].index_select(0, flat).mul_(g_rows).reshape(n, -1))
        return d_rows.T, d_tables.reshape(n, size), None, None


class _Sign(torch.autograd.Function):
    """(x > 0) as 0/1, the gradient straight through (torch-dwn's STEFunction)."""

    @staticmethod
    def forward(ctx, x):
        return (x > 0).float()

    @staticmethod
    def backward(ctx, g):
        return g


class _Choose(torch.autograd.Function):
    """x[:, scores.argmax(0)]: each column of scores picks one input. Backward as DWN's
    LearnableMappingFunction: d scores = (2 x - 1)^T g, d x = g softmax(scores / tau, over inputs)^T."""

    @staticmethod
    def forward(ctx, x, scores, tau: float):
        ctx.save_for_backward(x, scores)
        ctx.tau = tau
        return x.index_select(1, scores.argmax(0))

    @staticmethod
    def backward(ctx, g):
        x, scores = ctx.saved_tensors
        soft = torch.softmax(scores / ctx.tau, 0)
        # At DWN's temperature most weights are subnormal floats, which x86 multiplies ~10x slower than
        # normal ones (measured: 10 ms against 0.75 ms for this product at 256 x 1536 x 176); they add
        # less than 1e-38 of a gradient, and GPUs flush them to zero anyway.
        soft.masked_fill_(soft < torch.finfo(soft.dtype).tiny, 0.0)
        return g @ soft.T, (2 * x - 1).T @ g, None


def random_mapping(input_size: int, nodes: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(nodes, k) input indices covering the inputs as evenly as possible: concatenated random
    permutations of the inputs, as torch-dwn's layer_mapping."""
    count = nodes * k
    perms = [torch.randperm(input_size, generator=generator) for _ in range(math.ceil(count / input_size))]
    return torch.cat(perms)[:count].reshape(nodes, k)


class LUTLayer(nn.Module):
    """`nodes` k-input lookup tables over `input_size` bits -> `nodes` bits.

    mapping: "random" (fixed at construction) or "learnable" (chosen by learned scores, _Choose).
    alpha and beta: torch-dwn's defaults, 0.5 * 0.75^(k-1) and 1/3. The tables are clamped to [-1, 1]
    before each training-mode forward, as torch-dwn does: beyond that only their sign matters."""

    def __init__(self, input_size: int, nodes: int, k: int, mapping: str = "random", tau: float = 1e-3):
        super().__init__()
        if mapping not in ("random", "learnable"):
            raise ValueError(f"mapping must be random or learnable, got {mapping!r}")
        self.input_size, self.nodes, self.k, self.tau = input_size, nodes, k, tau
        self.tables = nn.Parameter(torch.rand(nodes, 2**k) * 2 - 1)
        if mapping == "learnable":
            self.scores = nn.Parameter(torch.rand(input_size, nodes * k))
            self.register_buffer("mapping", torch.arange(nodes * k).reshape(nodes, k), persistent=False)
        else:
            self.scores = None
            self.register_buffer("mapping", random_mapping(input_size, nodes, k))
        self.register_buffer("efd", efd_matrix(k, 0.5 * 0.75 ** (k - 1), 1 / 3), persistent=False)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.tables.clamp_(-1, 1)
        if self.scores is not None:
            bits = _Choose.apply(bits, self.scores, self.tau)
        return _Sign.apply(_Lookup.apply(bits, self.tables, self.mapping, self.efd))

    def connections(self) -> torch.Tensor:
        """(nodes, k): the input each node's address bit l reads, as hardware wires it."""
        if self.scores is None:
            return self.mapping
        return self.scores.argmax(0).reshape(self.nodes, self.k)

    def truth_tables(self) -> torch.Tensor:
        """(nodes, 2^k) 0/1: each node's output bit at each address."""
        return (self.tables > 0).to(torch.uint8)
