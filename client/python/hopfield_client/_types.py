"""The error type and the result types of hopfield_client."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional

import grpc
import numpy as np


class HopfieldError(Exception):
    """A call failed: the server's gRPC status, or a client-side check.

    `code` is the grpc.StatusCode (the table in api.md says which situation
    gives which), `details` the server's message (it names the field, the
    expected and the actual value). Input the server could not be sent at
    all (a 3-D array, a negative id, an unknown enum name) raises this too,
    with INVALID_ARGUMENT, as the server would.
    """

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    def __reduce__(self):  # picklable (multiprocessing, concurrent.futures)
        return type(self), (self.code, self.details)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "HopfieldError":
        """The HopfieldError for a failed gRPC call."""
        code = error.code() if callable(getattr(error, "code", None)) else None
        details = error.details() if callable(getattr(error, "details", None)) else None
        return cls(code or grpc.StatusCode.UNKNOWN, details or str(error))


class Match(NamedTuple):
    """One stored pattern a retrieval weighed: its id, its separation weight
    p_μ and its similarity to the query."""

    id: int
    weight: float
    score: float


@dataclass
class RetrieveResults:
    """The answers to n queries, in query order, as NumPy arrays of length n.

    `patterns` is float32 [n, dim] (the fixed points; None with
    omit_pattern); `matches[i]` lists query i's Match-es by weight,
    descending (return_matches of them); `energy_traces[i]` is query i's
    energy per iteration (only with return_energy_trace, else None). The
    other fields are those of hopfield.v1.Retrieval.
    """

    patterns: Optional[np.ndarray]
    nearest_ids: np.ndarray        # uint64
    nearest_weights: np.ndarray    # float32
    iterations: np.ndarray         # uint32
    converged: np.ndarray          # bool
    energy: np.ndarray             # float64
    support_size: np.ndarray       # uint32
    metastable: np.ndarray         # bool
    null_mass: np.ndarray          # float32 (softmax1 only)
    exact: np.ndarray              # bool
    truncation_bound: np.ndarray   # float32
    beta: np.ndarray               # float32, the β used
    approximate: np.ndarray        # bool, the search index answered
    matches: List[List[Match]]
    energy_traces: Optional[List[np.ndarray]]

    def __len__(self) -> int:
        return len(self.nearest_ids)
