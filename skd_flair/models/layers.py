"""Scoring layers shared by the biaffine models: MLP, biaffine and triaffine forms."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "Biaffine", "Triaffine"]


class MLP(nn.Module):
    def __init__(self, n_in: int, n_out: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.activation = nn.LeakyReLU(0.1)
        self.dropout = nn.Dropout(dropout)
        nn.init.orthogonal_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x):
        return self.dropout(self.activation(self.linear(x)))


def _with_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_ones(x.shape[:-1] + (1,))], -1)


class Biaffine(nn.Module):
    """``out[b, o, x, y] = [x; 1]^T W_o [y; 1]`` (the bias units are optional). Weights start at zero
    (``init="zeros"``, as biaffine parsers do) or Xavier-uniform per output (``init="xavier"``)."""

    def __init__(self, n_in: int, n_out: int = 1, bias_x: bool = True, bias_y: bool = True, init: str = "zeros"):
        super().__init__()
        self.bias_x, self.bias_y = bias_x, bias_y
        self.weight = nn.Parameter(torch.zeros(n_out, n_in + bias_x, n_in + bias_y))
        if init == "xavier":
            for o in range(n_out):
                nn.init.xavier_uniform_(self.weight.data[o])
        elif init != "zeros":
            raise ValueError(f"init must be 'zeros' or 'xavier', got {init!r}")

    def _inputs(self, x, y):
        return (_with_ones(x) if self.bias_x else x), (_with_ones(y) if self.bias_y else y)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x ``[B, N, n]``, y ``[B, M, n]`` -> ``[B, n_out, N, M]``."""
        x, y = self._inputs(x, y)
        return torch.einsum("bxi,oij,byj->boxy", x, self.weight, y)

    def pairs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Only the aligned pairs: x, y ``[B, N, n]`` -> ``[B, N, n_out]``."""
        x, y = self._inputs(x, y)
        return torch.einsum("bni,oij,bnj->bno", x, self.weight, y)


class Triaffine(nn.Module):
    """``out[b, h, s, d] = [h; 1]^T (W . s) [d; 1]``: a trilinear form with bias units on the head and
    dependent sides, weights start at zero (so a second-order parser starts as a first-order one)."""

    def __init__(self, n_in: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in + 1, n_in, n_in + 1))

    def forward(self, head: torch.Tensor, sib: torch.Tensor, dep: torch.Tensor) -> torch.Tensor:
        """Each ``[B, S, n]`` -> ``[B, S, S, S]``."""
        t = torch.einsum("bhi,ijk->bhjk", _with_ones(head), self.weight)
        t = torch.einsum("bhjk,bdk->bhdj", t, _with_ones(dep))
        return torch.einsum("bhdj,bsj->bhsd", t, sib)
