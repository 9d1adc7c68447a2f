"""Several processes working as one: sharded annotation and Flair's multi-GPU training (DistributedDataParallel),
on CUDA (NCCL, one GPU a process) or on CPU cores (gloo).

``launch(fn, n, *args)`` starts ``n`` local processes joined in one torch.distributed group (a rendezvous file,
so no fixed port is taken) and returns rank 0's value. Under ``torchrun`` (one node or several) the processes
already exist: ``join_from_environment`` joins the group torchrun describes. Flair's own
``launch_distributed`` is CUDA-only (it counts GPUs and uses NCCL), hence this launcher.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ..registry import ConfigError
from ..structs import StructureInputError
from . import atomic_path

log = logging.getLogger("skd_flair")

__all__ = ["launch", "join_from_environment", "processes", "is_distributed", "is_main_process", "any_rank"]


def is_distributed() -> bool:
    """Inside a torch.distributed group of several processes."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def is_main_process() -> bool:
    return not is_distributed() or torch.distributed.get_rank() == 0


def any_rank(flag: bool) -> bool:
    """True on every process when `flag` is true on any (a decision every rank must take together, such as
    stopping: DDP deadlocks when one rank leaves the loop alone)."""
    if not is_distributed():
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def processes(trainer: dict, nproc: int | None) -> int:
    """How many processes a training run uses: ``--nproc`` when given, else one a local GPU when
    ``trainer.multi_gpu`` is set (Flair's meaning), else one."""
    if nproc is not None and nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if nproc is not None:
        return nproc
    if not trainer.get("multi_gpu"):
        return 1
    if is_distributed():  # under torchrun: the processes exist already
        return 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0:
        raise ConfigError("trainer.multi_gpu: true runs one process a GPU and this machine has none; "
                          "give --nproc N to train with N CPU processes (gloo)")
    return gpus


def launch(fn: Callable[..., Any], nproc: int, *args) -> Any:
    """Run ``fn(*args)`` in `nproc` fresh local processes of one group; return rank 0's value (JSON-able)."""
    import torch.multiprocessing as mp

    cuda = torch.cuda.is_available()
    if cuda and torch.cuda.device_count() < nproc:
        raise ConfigError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} GPU(s); "
                          "one process a GPU")
    log.info(f"launching {nproc} processes ({'NCCL, one GPU each' if cuda else 'gloo, CPU'})")
    with tempfile.TemporaryDirectory() as folder:
        try:
            mp.spawn(_entry, args=(nproc, folder, cuda, fn, args), nprocs=nproc, join=True)
        except mp.ProcessRaisedException:
            errors = sorted(Path(folder).glob("error-*.txt"))
            if errors:  # a configuration or data error: the one line a single process would give
                raise ConfigError(errors[0].read_text()) from None
            raise
        return json.loads((Path(folder) / "result.json").read_text())


def _entry(rank: int, world: int, folder: str, cuda: bool, fn, args) -> None:
    from ..logs import flair_logs_to_stderr

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [rank {rank}] %(message)s")
    _join("nccl" if cuda else "gloo", f"file://{folder}/rendezvous", rank, world, cuda)
    try:
        with flair_logs_to_stderr():
            try:
                value = fn(*args)
            except (ConfigError, StructureInputError) as error:
                (Path(folder) / f"error-{rank}.txt").write_text(str(error))
                raise
        if rank == 0:
            with atomic_path(Path(folder) / "result.json") as tmp:
                tmp.write_text(json.dumps(value, default=str))
    finally:
        torch.distributed.destroy_process_group()


def join_from_environment() -> bool:
    """Join the group ``torchrun`` describes in the environment (WORLD_SIZE > 1); False when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or is_distributed():
        return False
    cuda = torch.cuda.is_available()
    _join("nccl" if cuda else "gloo", "env://", int(os.environ["RANK"]), world, cuda,
          local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    return True


def _join(backend: str, init_method: str, rank: int, world: int, cuda: bool, local_rank: int | None = None) -> None:
    import flair

    if cuda:
        flair.device = torch.device("cuda", rank if local_rank is None else local_rank)
        torch.cuda.set_device(flair.device)
    else:
        flair.device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        _ddp_on_cpu()
    torch.distributed.init_process_group(backend, init_method=init_method, rank=rank, world_size=world)


def _ddp_on_cpu() -> None:
    """Flair's trainer hands DistributedDataParallel ``device_ids=[flair.device.index]``, which is ``[None]`` on
    CPU, and DDP refuses any device_ids for a CPU module; drop it there."""
    import flair.trainers.trainer as trainer_module
    from torch.nn.parallel import DistributedDataParallel

    def cpu_ddp(module, device_ids=None, **kwargs):
        return DistributedDataParallel(module, device_ids=None if device_ids == [None] else device_ids, **kwargs)

    trainer_module.DistributedDataParallel = cpu_ddp
