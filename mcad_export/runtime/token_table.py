"""The token table on the host, for text graphs that start at the embeddings (compile/host_gather.py). Torch-free.

The table is two .npy files beside the compiled model: int8 rows [vocab, width] and one float32 scale per row
[vocab]. Both are memory-mapped, so a query makes resident only the pages of the rows it looks up (a 256k x 768
SigLIP 2 table is 197 MB on disk; one 64-token query touches at most 64 rows, 48 KB). The Android app reads the
same files the same way (ai.mcad.core.HostTokenTable).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract import HOST_TOKEN_ROWS, HOST_TOKEN_SCALES
from ..errors import InputError


class HostTokenTable:
    """gather(ids [B, L]) -> float32 [B, L, width]: row * its scale, what the cut Gather fed the graph."""

    def __init__(self, rows_path, scales_path):
        fix = "recompile the folder"
        try:
            self.rows = np.load(Path(rows_path), mmap_mode="r", allow_pickle=False)
            self.scales = np.load(Path(scales_path), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{rows_path}: not a token table mcad-export wrote ({e}); {fix}") from None
        if self.rows.dtype != np.int8 or self.rows.ndim != 2:
            raise InputError(f"{rows_path}: token rows are {self.rows.dtype} {self.rows.shape}, not int8 2-D; {fix}")
        if self.scales.dtype != np.float32 or self.scales.shape != (self.rows.shape[0],):
            raise InputError(
                f"{scales_path}: scales are {self.scales.dtype} {self.scales.shape}, not float32 "
                f"[{self.rows.shape[0]}]; {fix}"
            )

    @classmethod
    def in_folder(cls, folder) -> HostTokenTable:
        """The table compile wrote beside a model: the contract's two file names in `folder`."""
        return cls(Path(folder) / HOST_TOKEN_ROWS, Path(folder) / HOST_TOKEN_SCALES)

    @classmethod
    def from_files(cls, files: dict) -> HostTokenTable | None:
        """From a record's {"token_table": path, "token_scales": path}; None for a graph that reads ids."""
        return cls(files["token_table"], files["token_scales"]) if files.get("token_table") else None

    @property
    def vocab(self) -> int:
        return int(self.rows.shape[0])

    @property
    def width(self) -> int:
        return int(self.rows.shape[1])

    def gather(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab):
            raise InputError(f"token id {int(ids.max())} is outside the {self.vocab}-row token table")
        return (self.rows[ids].astype(np.float32) * self.scales[ids][..., None]).astype(np.float32)

    def resident_bytes(self, ids: np.ndarray) -> int:
        """Bytes of table a query reads: its distinct rows and their scales (the roofline's `table_rows`)."""
        distinct = len(np.unique(np.asarray(ids)))
        return distinct * (self.width + 4)
