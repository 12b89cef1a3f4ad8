"""Training on several processes (`torchrun`, `accelerate launch`): what every task's run needs to be correct there.

The Trainer (transformers, trl) already shards the batches and averages the gradients; what it leaves to us:
- one process group for the whole run, made before the Trainer's (gloo on CPUs, nccl on GPUs) with a timeout long
  enough for rank 0's work that the others wait for (the base model's answers, the final evaluation, the save);
- the work folder prepared once (rank 0) and the checkpoint to resume from decided once and sent to every rank;
- every rank reading the same data (on several nodes a path can hold different files): fingerprints compared;
- the weights every rank ends with compared, so the checkpoint rank 0 writes is provably what all of them trained;
- one voice: ranks other than 0 print nothing, and an error every rank hits is reported once.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

from tuneship.trainer.errors import TrainingError

T = TypeVar("T")

# Ranks other than 0 wait this long in a collective while rank 0 works alone (measuring the base model's answers
# before training, the final evaluation and the save after it).
TIMEOUT = timedelta(hours=3)
# An error on a rank other than 0 is printed after this delay: when rank 0 failed too (bad data fails every rank),
# torchrun stops the others first, and the user reads the message once.
OTHER_RANK_ERROR_DELAY_S = 3.0
_in_session = False


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Under torchrun every process trains; only the first evaluates and writes the checkpoint."""
    return rank() == 0


def _group_ready() -> bool:
    """Whether collectives can run: several processes, and the process group made (by `start` or the Trainer)."""
    if world_size() < 2:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        start()
    return True


def backend() -> str:
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def start() -> None:
    """Make the process group (accelerate and the Trainer use an existing one), with our longer timeout."""
    if world_size() < 2:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend(), timeout=TIMEOUT)


def from_main(value: T) -> T:
    """Rank 0's `value` on every rank (the others' are ignored); also a barrier."""
    if not _group_ready():
        return value
    import torch.distributed as dist

    box = [value if is_main_process() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    if not _group_ready():
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def agree(what: str, value: str) -> None:
    """Fail on every rank, naming the odd one, if the ranks do not hold the same `value` (e.g. a data fingerprint)."""
    values = gather(value)
    odd = [r for r, v in enumerate(values) if v != values[0]]
    if odd:
        raise TrainingError(
            f"rank {odd[0]} read different {what} than rank 0 ({values[odd[0]]} against {values[0]}): every process "
            "must read the same files (on several nodes, put them on storage every node sees)")


def parameters_digest(model: Any) -> str:
    """sha256 of the parameters a run trains (those that take gradients: every weight in full fine-tuning, the
    adapters and the head with LoRA; names sorted, bytes as stored). Frozen weights come unchanged from the base
    model's files on every rank."""
    import torch

    digest = hashlib.sha256()
    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    for name in sorted(named):
        tensor = named[name].detach().to("cpu").contiguous()
        digest.update(name.removeprefix("module.").encode())
        digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return "sha256:" + digest.hexdigest()


def replicas(model: Any) -> dict[str, Any] | None:
    """The run's record for the manifest (None alone): every rank's parameters compared after training, so a
    replica that drifted (a layer left out of the gradient sync) fails the run instead of shipping rank 0's copy."""
    if world_size() < 2:
        return None
    digests = gather(parameters_digest(model))
    if len(set(digests)) != 1:
        odd = next(r for r, d in enumerate(digests) if d != digests[0])
        raise TrainingError(f"after training, rank {odd}'s weights differ from rank 0's: the processes did not "
                            "train one model; the checkpoint is not written")
    return {"world_size": world_size(), "nodes": nodes(), "backend": backend(), "parameters_sha256": digests[0]}


def nodes() -> int:
    return max(1, world_size() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def _settle() -> None:
    """A barrier at the end of a run that went well. gloo's worker thread frees a finished collective's tensors
    (a Python decref, so it takes the GIL) after the caller already saw the collective complete; a rank with nothing
    left to do could reach interpreter shutdown first, and the worker's late GIL request then aborts the process
    ("terminate called without an active exception", one run in two of the image test). The barrier's enqueue
    waits for that worker (it holds the work queue's lock while it frees), and the barrier frees no Python objects."""
    if world_size() < 2:
        return
    import torch.distributed as dist

    if dist.is_initialized():  # a group to settle, never one made for this
        dist.barrier()


@contextmanager
def session() -> Iterator[None]:
    """One training run on this process: alone, nothing happens. Under a launcher, the process group is made and
    closed, ranks other than 0 keep quiet, and their errors are reported only if rank 0 did not stop first."""
    global _in_session
    if world_size() < 2 or _in_session:
        yield
        return
    _in_session = True
    start()
    stdout, stderr = sys.stdout, sys.stderr
    quiet = not is_main_process()
    if not quiet:
        print(f"training on {world_size()} processes ({nodes()} node(s), {backend()}): --batch-size is per process; "
              "rank 0 evaluates and writes the checkpoint", flush=True)
    if quiet:
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (closed below)
    try:
        yield
        _settle()
    except Exception as error:
        if not quiet:
            raise
        sys.stdout, sys.stderr = stdout, stderr
        time.sleep(OTHER_RANK_ERROR_DELAY_S)  # torchrun ends this process first if rank 0 failed as well
        if type(error).__module__.startswith("tuneship."):
            print(f"error (rank {rank()} of {world_size()}): {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        raise
    finally:
        _in_session = False
        if quiet and sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout, sys.stderr = stdout, stderr
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
