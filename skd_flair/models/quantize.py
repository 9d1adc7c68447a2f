"""Dynamic int8 quantisation of a model's LSTM/GRU and Linear layers that survives Flair's save and load.

Flair saves a model as its constructor arguments plus its ``state_dict`` and loads it by building a *float*
model from those arguments and calling ``load_state_dict``. The state dict of a dynamically quantised model holds
packed int8 weights (``<layer>._packed_params._packed_params`` for a Linear, ``<layer>._all_weight_values.<i>.param``
for an RNN) instead of ``weight`` / ``weight_ih_l0``, so Flair's loading stops with "Missing key(s)". A model class
that calls :func:`quantize_like` at the start of its ``load_state_dict`` (``DistillableTagger`` does) first
quantises exactly the layers whose packed weights the state dict holds, and then loads it as usual: the file keeps
int8 weights and is read back by the ordinary ``Model.load``. No code from the file runs beyond Flair's own
loading; the quantisation itself is torch's ``quantize_dynamic``.

Quantised layers take and return float32 tensors and run on the CPU only (torch has no CUDA kernels for them).

Word tables (an ``nn.Embedding`` weight, most of a student's file) are stored int8 differently: per row, the
int8 values ``round(w / s)`` under ``<key>_int8`` and the row's scale ``s = max|w| / 127`` under
``<key>_row_scale`` (:func:`int8_rows`). :func:`float_rows` turns them back into the float32 ``<key>`` when the
state dict is loaded, so the loaded model computes with ordinary float tables whose entries are within ``s / 2``
of the originals; only the file is smaller (a quarter of the table's bytes).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from collections import OrderedDict
from typing import Dict, Iterable, Iterator, List, Mapping, Optional

import torch
from torch import nn

__all__ = ["QUANTIZABLE", "float_rows", "int8_rows", "quantize_layers", "quantize_like", "quantized_layer_names",
           "quiet"]

QUANTIZABLE = (nn.LSTM, nn.GRU, nn.Linear)
# the state-dict key suffixes by which a dynamically quantised Linear / RNN layer is recognised
_PACKED_SUFFIXES = ("._packed_params._packed_params", "._all_weight_values.0.param")


@contextmanager
def quiet() -> Iterator[None]:
    """Silence torch's deprecation warnings about torch.ao.quantization (it still works)."""
    # torch.ao.quantization warns on every call that it is deprecated in favour of torchao; it still works
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantiz", category=UserWarning)
        yield


def quantized_layer_names(state_dict: Mapping[str, object]) -> List[str]:
    """Names of the layers that `state_dict` stores dynamically quantised (packed weights), in key order."""
    names: List[str] = []
    for key in state_dict:
        for suffix in _PACKED_SUFFIXES:
            if key.endswith(suffix) and key[:-len(suffix)] not in names:
                names.append(key[:-len(suffix)])
    return names


def quantize_layers(model: nn.Module, names: Optional[Iterable[str]] = None) -> List[str]:
    """Replace the float ``nn.LSTM`` / ``nn.GRU`` / ``nn.Linear`` layers of `model` (those in `names`, or all when
    None) by torch's dynamically int8-quantised versions, in place. Returns the names of the layers replaced
    (layers already quantised, or of another type, are left alone)."""
    wanted = None if names is None else set(names)
    targets = [name for name, module in model.named_modules()
               if name and type(module) in QUANTIZABLE and (wanted is None or name in wanted)]
    if not targets:
        return []
    if torch.backends.quantized.engine == "none":
        raise RuntimeError(f"this torch build has no quantised CPU engine (supported: "
                           f"{torch.backends.quantized.supported_engines}); int8 layers cannot run here")
    with quiet():
        torch.ao.quantization.quantize_dynamic(model, qconfig_spec=set(targets), dtype=torch.qint8, inplace=True)
    return targets


def quantize_like(model: nn.Module, state_dict: Mapping[str, object]) -> List[str]:
    """Quantise the layers of `model` that `state_dict` holds quantised, so ``model.load_state_dict(state_dict)``
    finds the keys it expects. A no-op (returns []) for an ordinary float state dict."""
    names = quantized_layer_names(state_dict)
    return quantize_layers(model, names) if names else []


INT8_SUFFIX, SCALE_SUFFIX = "_int8", "_row_scale"


def int8_rows(state_dict: Dict[str, torch.Tensor], keys: Iterable[str]) -> List[str]:
    """Store the float tables `keys` of `state_dict` as per-row int8 values and scales, in place (the dict's
    ``_metadata`` is kept). Returns the keys converted."""
    done = []
    for key in keys:
        weight = state_dict.pop(key).float()
        scale = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
        state_dict[key + INT8_SUFFIX] = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        state_dict[key + SCALE_SUFFIX] = scale
        done.append(key)
    return done


def float_rows(state_dict: Mapping[str, object]) -> Mapping[str, object]:
    """`state_dict` with every int8 table (`int8_rows`) turned back into its float32 key; the same object when
    it holds none."""
    tables = [key[:-len(INT8_SUFFIX)] for key in state_dict
              if key.endswith(INT8_SUFFIX) and key[:-len(INT8_SUFFIX)] + SCALE_SUFFIX in state_dict]
    if not tables:
        return state_dict
    out: Dict[str, object] = OrderedDict()
    for key, value in state_dict.items():
        base = key[:-len(INT8_SUFFIX)] if key.endswith(INT8_SUFFIX) else None
        if base in tables:
            out[base] = value.float() * state_dict[base + SCALE_SUFFIX].float()[:, None]
        elif not (key.endswith(SCALE_SUFFIX) and key[:-len(SCALE_SUFFIX)] in tables):
            out[key] = value
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]  (module versions, as nn.Module.state_dict keeps)
    return out
