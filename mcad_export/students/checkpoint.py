"""Loading untrusted weight files safely, and explaining precisely why weights don't fit."""

from __future__ import annotations

import pickle
import stat
from pathlib import Path

from ..errors import CheckpointError, UnsafeCheckpointError, WeightsMismatchError
from ..guard import sha256_of  # noqa: F401  (the loaders record their weights' digest with it)

_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")


def read_state_dict(path) -> dict:
    """A flat {name: tensor} from .safetensors or a torch file, never executing pickled code."""
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path} (check the --weights path)")
    if path.is_dir():
        raise CheckpointError(f"weights path is a directory, not a file: {path}")
    if not stat.S_ISREG(path.stat().st_mode):
        # A FIFO or device would block the read forever (or stream without end).
        raise CheckpointError(f"weights path is not a regular file (a pipe, socket or device): {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise CheckpointError(f"cannot read weights file {path}: {e.strerror} (check its permissions)") from None
    if not head:
        raise CheckpointError(f"weights file is empty: {path}")

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:  # safetensors raises its own SafetensorError / OSError flavours
            raise CheckpointError(f"{path} is not a valid safetensors file ({_first_line(e)})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            # "Unsupported global" is a pickle that names code to run; "Unsupported operand" is bytes that are
            # not a pickle at all (corrupt or random data), which must not be called dangerous.
            if "unsupported global" in str(e).lower() or "GLOBAL " in str(e):
                raise UnsafeCheckpointError(
                    f"{path} contains pickled Python objects, not just tensors; refusing to load it "
                    "(it could run code). Re-save it as a state dict (torch.save(model.state_dict(), ...)) "
                    "or as .safetensors"
                ) from None
            raise CheckpointError(
                f"{path} is not a PyTorch or safetensors checkpoint (its bytes are no torch.save "
                "file: corrupt, truncated or another format); expected a .pt/.pth state dict or a "
                ".safetensors file"
            ) from None
        except Exception as e:  # noqa: BLE001 - arbitrary bytes fail anywhere inside the unpickler
            raise CheckpointError(
                f"{path} is not a PyTorch or safetensors checkpoint ({_first_line(e)}); "
                "expected a .pt/.pth state dict or a .safetensors file"
            ) from None
    return _unwrap(state, path)


def _unwrap(obj, path: Path) -> dict:
    import torch

    # open_clip training checkpoints: {"epoch": .., "state_dict": {...}}, DDP "module." prefixes.
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state dict (found {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors (keys: {', '.join(list(obj)[:5])})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    check_finite(tensors, path)
    return tensors


def check_finite(tensors: dict, source) -> None:
    """NaN or Inf anywhere (even rows the parity samples never touch, like unused token embeddings) would ship."""
    import torch

    for name, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{source}: tensor {name} holds {bad} non-finite value(s) (NaN or Inf); "
                "fix or retrain the checkpoint, nothing was exported"
            )


def apply_state_dict(model, state: dict, what: str) -> None:
    """Strict load with a one-line diagnosis: counts and a few names of missing/unexpected/misshapen keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or misshapen:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        if misshapen:
            parts.append(f"{len(misshapen)} tensors with the wrong shape ({_few(misshapen)})")
        raise WeightsMismatchError(
            f"weights don't fit {what}: " + "; ".join(parts) + ". Check --student matches the checkpoint"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def _few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
